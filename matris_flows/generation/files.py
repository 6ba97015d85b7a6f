"""User files as candidates: CIF, POSCAR, extxyz, ASE db, pymatgen JSON; folders and globs.

Each file is read on its own, so one unreadable file becomes one ``unparseable``
rejection naming it and the rest of the campaign goes on.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.transformations.standard_transformations import OrderDisorderedStructureTransformation

from matris_flows.core.serialization import safe_loadfn
from matris_flows.generation.ids import build_candidate
from matris_flows.generation.schemas import (
    Candidate,
    Provenance,
    RejectedCandidate,
    RejectionReason,
    SourceMethod,
)

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".extxyz", ".xyz", ".db", ".json", ".json.gz", ".cif.gz")
_VASP_NAMES = ("POSCAR", "CONTCAR")


def _is_structure_file(path: Path) -> bool:
    name = path.name
    return name.lower().endswith(STRUCTURE_SUFFIXES) or name.upper().startswith(_VASP_NAMES)


def expand_paths(inputs: Sequence[str | Path]) -> list[tuple[str, str | None]]:
    """Expand files, folders and globs into ``(path, problem)`` pairs in a stable order.

    Folders contribute their structure files (recursively, sorted); a glob its sorted
    matches; an input that names nothing comes back with a problem message instead of
    disappearing.
    """
    out: list[tuple[str, str | None]] = []
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and _is_structure_file(p))
            if not found:
                out.append((text, f"folder {text} contains no structure files ({', '.join(STRUCTURE_SUFFIXES)})"))
            out.extend((p, None) for p in found)
        elif path.is_file():
            out.append((text, None))
        elif glob.has_magic(text):
            found = sorted(p for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                out.append((text, f"glob {text} matches no files"))
            out.extend((p, None) for p in found)
        else:
            out.append((text, f"{text} does not exist"))
    return out


def _from_pymatgen_json(path: str) -> list[Structure]:
    # a user's file: decoded with the class allowlist, so it cannot name a module to import
    data = safe_loadfn(path)
    items = data if isinstance(data, list) else [data]
    structures = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and "structure" in item:  # e.g. a raw entry or task document
            item = item["structure"]
            if isinstance(item, dict):
                item = Structure.from_dict(item)
        if isinstance(item, ComputedStructureEntry):
            item = item.structure
        if not isinstance(item, Structure):
            raise ValueError(f"item {i} is a {type(item).__name__}, not a Structure or ComputedStructureEntry")
        structures.append(item)
    return structures


def read_structures(path: str) -> list[Structure]:
    """Read every structure in one file; raise ``ValueError`` naming the file if it cannot be read."""
    from ase.io import read as ase_read
    from pymatgen.io.ase import AseAtomsAdaptor

    name = Path(path).name.lower()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CIF parsers warn about every rounding; a failure still raises
            if name.endswith((".cif", ".cif.gz")):
                from pymatgen.io.cif import CifParser

                structures = CifParser(path).parse_structures(primitive=False, on_error="raise")
            elif name.endswith((".json", ".json.gz")):
                structures = _from_pymatgen_json(path)
            elif name.endswith(".db"):
                from ase.db import connect

                with connect(path) as db:
                    structures = [AseAtomsAdaptor.get_structure(row.toatoms()) for row in db.select(sort="id")]
            elif name.endswith((".extxyz", ".xyz")):
                frames = ase_read(path, index=":", format="extxyz")
                for i, atoms in enumerate(frames):
                    if not atoms.pbc.all() or atoms.cell.rank < 3:
                        raise ValueError(f"frame {i} has no periodic 3D cell (Lattice= and pbc are needed)")
                structures = [AseAtomsAdaptor.get_structure(atoms) for atoms in frames]
            elif name.upper().startswith(_VASP_NAMES) or name.endswith((".vasp", ".poscar")):
                from pymatgen.io.vasp import Poscar

                structures = [Poscar.from_file(path, check_for_potcar=False).structure]
            else:
                structures = [Structure.from_file(path)]
    except Exception as exc:  # every parser has its own exception types; all mean "unreadable"
        raise ValueError(f"{path}: cannot be read as a structure file ({type(exc).__name__}: {exc})") from exc
    if not structures:
        raise ValueError(f"{path}: contains no structures")
    return structures


def order_structure(structure: Structure, n_orderings: int = 1) -> list[Structure]:
    """Order a partially occupied structure; return the ``n_orderings`` lowest-Ewald-energy orderings.

    Oxidation states are guessed for the Ewald ranking (zero charges if none can be
    guessed, which keeps the enumeration order). If the occupancies need a bigger cell to
    be integral, supercells up to 2x2x2 are tried.
    """
    decorated = structure.copy()
    try:
        decorated.add_oxidation_state_by_guess()
    except Exception:  # noqa: BLE001 - no guess: rank by enumeration order instead
        decorated.add_oxidation_state_by_element({el.symbol: 0 for el in decorated.composition.elements})
    transformation = OrderDisorderedStructureTransformation(algo=OrderDisorderedStructureTransformation.ALGO_FAST)
    last_error: Exception | None = None
    for scaling in ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)):
        try:
            result = transformation.apply_transformation(decorated * scaling, return_ranked_list=n_orderings)
        except Exception as exc:  # noqa: BLE001 - non-integral occupancy in this cell: try a larger one
            last_error = exc
            continue
        ordered = [item["structure"] for item in result] if isinstance(result, list) else [result]
        for s in ordered:
            s.remove_oxidation_states()
        return ordered
    raise ValueError(f"could not order the partial occupancies ({last_error})")


def iter_file_candidates(
    inputs: Sequence[str | Path],
    order_disordered: bool = False,
    n_orderings: int = 1,
) -> Iterator[Candidate | RejectedCandidate]:
    """Yield one candidate per structure in the files, or a rejection per bad file or structure."""
    for path, problem in expand_paths(inputs):
        yield from iter_one_file(path, problem, order_disordered, n_orderings)


def iter_one_file(
    path: str, problem: str | None = None, order_disordered: bool = False, n_orderings: int = 1
) -> Iterator[Candidate | RejectedCandidate]:
    """Candidates (or rejections) from one expanded path; ``problem`` is set for missing inputs."""
    if problem is not None:
        yield RejectedCandidate(reason=RejectionReason.INVALID_INPUT, message=problem, input_name=path)
        return
    try:
        structures = read_structures(path)
    except ValueError as exc:
        yield RejectedCandidate(reason=RejectionReason.UNPARSEABLE, message=str(exc), input_name=path)
        return
    for index, structure in enumerate(structures):
        input_name = f"{path}#{index}"
        # parent_id names the file, not its folder, so ids survive moving the campaign folder
        base = Provenance(
            source=SourceMethod.FILE, parent_id=f"{Path(path).name}#{index}", file_path=path, file_index=index
        )
        if structure.is_ordered:
            yield build_candidate(structure, base)
            continue
        if not order_disordered:
            yield RejectedCandidate(
                reason=RejectionReason.PARTIAL_OCCUPANCY,
                message=f"{input_name} ({structure.composition.formula}) has partial occupancies; "
                "set order_disordered=True to order them",
                input_name=input_name,
                provenance=base,
            )
            continue
        try:
            orderings = order_structure(structure, n_orderings)
        except ValueError as exc:
            yield RejectedCandidate(
                reason=RejectionReason.PARTIAL_OCCUPANCY, message=f"{input_name}: {exc}", input_name=input_name,
                provenance=base,
            )
            continue
        for rank, ordered in enumerate(orderings):
            yield build_candidate(ordered, base.model_copy(update={"ordering": f"ewald_rank_{rank}"}))
