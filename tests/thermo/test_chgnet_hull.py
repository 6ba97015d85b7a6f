"""CHGNet through the relax and hull stages against MP's DFT e_above_hull (the literature check).

CHGNet's Matbench Discovery e_above_hull MAE is 0.063 eV/atom; rattled MP
Li-Fe-P-O structures relaxed with it must stay below 0.1 eV/atom here.
"""

import numpy as np
import pytest
from hull_helpers import decode
from jobflow import Flow, JobStore, run_locally
from maggma.stores import MemoryStore

from matris_flows.relax.jobs import RelaxMaker
from matris_flows.relax.schemas import RelaxSettings
from matris_flows.thermo.elemental import ELEMENTAL_ID_PREFIX, relax_elemental_references
from matris_flows.thermo.jobs import HullMaker
from matris_flows.thermo.references import LocalFileReferences
from matris_flows.thermo.schemas import HullKind, ThermoStatus

N_STRUCTURES = 24
MAX_ATOMS = 12
# Screening decisions are made near the hull; far above it MP's metastable structures
# relax into other minima (an O2 polymorph at 0.77 eV/atom falls to 0.06), which measures
# the starting structure, not the energy model. Elemental polymorphs are references, not candidates.
MAX_E_ABOVE_HULL = 0.3
RATTLE = 0.03  # Å
SETTINGS = RelaxSettings(fmax=0.05, max_steps=200)


def pick(lfpo_raw):
    """A seeded sample of small MP compounds near the hull; always includes the FeO ground state."""
    small = [
        raw
        for raw in lfpo_raw
        if sum(raw["composition"].values()) <= MAX_ATOMS
        and len(raw["composition"]) >= 2
        and raw["e_above_hull"] <= MAX_E_ABOVE_HULL
    ]
    feo = min(
        (r for r in small if set(r["composition"]) == {"Fe", "O"} and r["composition"]["Fe"] == r["composition"]["O"]),
        key=lambda r: r["e_above_hull"],
    )
    rng = np.random.default_rng(0)
    others = [small[i] for i in rng.permutation(len(small)) if small[i] is not feo][: N_STRUCTURES - 1]
    return [feo, *others]


def rattled(structure, seed):
    out = structure.copy()
    rng = np.random.default_rng(seed)
    for i in range(len(out)):
        out.translate_sites([i], rng.normal(0, RATTLE, 3), frac_coords=False, to_unit_cell=True)
    return out


@pytest.mark.slow
def test_chgnet_e_above_hull_mae_vs_mp_dft(lfpo_raw, lfpo_path):
    chosen = pick(lfpo_raw)
    entries = [decode(raw) for raw in chosen]
    structures = [rattled(e.structure, seed) for seed, e in enumerate(entries)]
    relax = RelaxMaker(potential="chgnet", device="cpu", settings=SETTINGS).make(structures, [e.entry_id for e in entries])
    hull = HullMaker(references=LocalFileReferences([lfpo_path], snapshot_date="2024-11-21")).make(relax.output)
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    responses = run_locally(Flow([relax, hull]), store=store, ensure_success=True)
    docs = responses[hull.uuid][1].output.documents

    assert all(d.thermo_status is ThermoStatus.OK and d.hull_kind is HullKind.MP for d in docs)
    assert all(d.energy_correction_per_atom == 0.0 for d in docs)  # CHGNet: MP2020 already inside
    dft = np.array([raw["e_above_hull"] for raw in chosen])
    pred = np.array([d.e_above_hull for d in docs])
    errors = np.abs(pred - dft)
    mae = float(errors.mean())
    print(f"\nCHGNet e_above_hull vs MP DFT on {len(docs)} rattled Li-Fe-P-O compounds (<= {MAX_ATOMS} atoms):")
    for doc, raw, err in zip(docs, chosen, errors, strict=True):
        status, dft_e = doc.relaxation.status.value, raw["e_above_hull"]
        print(f"  {doc.candidate_id:>18} {doc.formula:>12} DFT {dft_e:7.3f}  CHGNet {doc.e_above_hull:7.3f}  |err| {err:.3f}  {status}")
    print(f"CHGNet e_above_hull MAE: {mae:.4f} eV/atom (Matbench Discovery: 0.063)")
    assert mae < 0.1

    # The Fe oxide: right convention lands near DFT; MP2020 applied again would put it ~1.47 eV/atom lower.
    feo = docs[0]
    assert feo.formula == "FeO"
    assert abs(feo.e_above_hull - chosen[0]["e_above_hull"]) < 0.15
    assert feo.relaxation.potential.energy_convention.value == "mp_corrected"


@pytest.mark.slow
def test_elemental_references_relax_with_the_campaign_potential():
    docs = relax_elemental_references(["Fe", "Li"], potential="chgnet", settings=SETTINGS, device="cpu")
    assert [d.candidate_id for d in docs] == [f"{ELEMENTAL_ID_PREFIX}-Fe", f"{ELEMENTAL_ID_PREFIX}-Li"]
    assert all(d.succeeded for d in docs)
    # CHGNet (MP2020 scale; elements carry no correction) close to MP's bcc Fe and Li ground states
    assert docs[0].energy_per_atom == pytest.approx(-8.47, abs=0.15)
    assert docs[1].energy_per_atom == pytest.approx(-1.91, abs=0.15)
