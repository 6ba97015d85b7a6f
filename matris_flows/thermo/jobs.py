"""jobflow Makers for the hull stage."""

from dataclasses import dataclass, field

from jobflow import Maker, job

from matris_flows.relax.schemas import RelaxationDocument, RelaxSettings
from matris_flows.thermo.assess import assess_candidates, flatten_relaxations, single_convention
from matris_flows.thermo.chemsys import elements_of
from matris_flows.thermo.elemental import campaign_references_from_relaxations, relax_elemental_references
from matris_flows.thermo.hull import PATCH_ABOVE_N_ELEMENTS
from matris_flows.thermo.references import LocalFileReferences, ReferenceProvider
from matris_flows.thermo.schemas import CandidateDocument


@dataclass
class HullMaker(Maker):
    """Energies above the convex hull for relaxed candidates, one job per group of chemical systems.

    Parameters
    ----------
    name
        Job name.
    references
        Reference provider for MP-compatible potentials (local MP files, the MP API with a
        maggma cache, or campaign-internal references). Default: the shared MP data files.
    stability_threshold
        ``is_stable`` means ``e_above_hull <= stability_threshold``, eV/atom (0 like Matbench
        Discovery; screens often use 0.05 or 0.1).
    relax_elemental_references
        For potentials whose energies are not MP-compatible and no ``elemental_references``
        given: relax the elemental ground states with the same potential inside this job.
    elemental_relax_settings
        Settings for those elemental relaxations.
    device
        Device for those elemental relaxations.
    raise_on_missing_reference
        Fail the job on a chemical system without references instead of writing
        ``no_reference`` documents.
    patch_above_n_elements
        Use a PatchedPhaseDiagram for systems with more elements than this.
    """

    name: str = "hull"
    references: ReferenceProvider | None = None
    stability_threshold: float = 0.0
    relax_elemental_references: bool = True
    elemental_relax_settings: RelaxSettings = field(default_factory=RelaxSettings)
    device: str = "auto"
    raise_on_missing_reference: bool = False
    patch_above_n_elements: int = PATCH_ABOVE_N_ELEMENTS

    @job
    def make(
        self,
        relaxation_outputs: list,
        elemental_references: list[RelaxationDocument] | None = None,
    ) -> list[CandidateDocument]:
        """One CandidateDocument per relaxation in ``relaxation_outputs``.

        ``relaxation_outputs`` takes RelaxationDocument-s, RelaxBatchOutput-s or lists of
        them (one per relaxation chunk). ``elemental_references`` are relaxations of the
        elements with the campaign's potential, used when its energies are not MP-compatible.
        """
        documents = flatten_relaxations(relaxation_outputs)

        def campaign_references():
            refs = flatten_relaxations(elemental_references)
            potential = single_convention(documents)
            if not refs and self.relax_elemental_references and potential is not None:
                elements = sorted({el for d in documents if d.succeeded for el in elements_of(d.chemsys)})
                refs = relax_elemental_references(elements, potential[0], self.elemental_relax_settings, self.device)
            return campaign_references_from_relaxations(refs, potential[0] if potential else None)

        return assess_candidates(
            documents,
            self.references or LocalFileReferences(),
            stability_threshold=self.stability_threshold,
            campaign_references=campaign_references,
            raise_on_missing_reference=self.raise_on_missing_reference,
            patch_above_n_elements=self.patch_above_n_elements,
        )
