"""The settings of each candidate source as a campaign spec gives them, with their defaults.

One place for each default: the spec validates a source's section with these models, and
the source Makers in :mod:`.jobs` take the defaults of the same fields from them
(:func:`field_default`). This module imports nothing but pydantic, so reading a spec never
loads the sources' heavy dependencies (jobflow, pymatgen analysis, pyxtal).
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid")


def field_default(model: type[BaseModel], name: str) -> Any:
    """The default of ``model``'s field ``name`` (a new one where the field has a default factory)."""
    return model.model_fields[name].get_default(call_default_factory=True)


class SubstitutionSource(BaseModel):
    """Ionic substitution (SAPS) from template structures."""

    model_config = _STRICT
    templates: list[str] = Field(description="Structure/entry files (JSON(.gz), CIF, POSCAR, ...) with templates.")
    threshold: float = Field(1e-3, gt=0, description="Minimum data-mined substitution probability.")
    max_substituted_species: int = Field(2, ge=1, description="At most this many species replaced at once.")
    allowed_elements: list[str] | None = Field(None, description="Only substitute in these elements.")
    max_per_template: int | None = Field(None, ge=1, description="Cap on candidates per template.")
    partial_fractions: list[float] = Field(default_factory=list, description="Partial substitution fractions of one site class.")
    max_templates: int | None = Field(None, ge=1, description="Use only the first N templates (smallest cells first).")
    max_template_atoms: int | None = Field(None, ge=1, description="Skip templates with more sites than this.")


class PrototypeSource(BaseModel):
    """Decorate common prototypes with the user's element lists."""

    model_config = _STRICT
    element_lists: list[list[str]] = Field(description="One element list per prototype site class.")
    prototypes: list[str] | None = Field(None, description="Prototype names (default: the whole library).")
    charge_balanced: bool = Field(True, description="Keep only charge-balanced compositions.")


class RandomSearchSource(BaseModel):
    """AIRSS-like random symmetric crystals with pyxtal."""

    model_config = _STRICT
    compositions: list[str] = Field(description="Formulas, e.g. ['NaCl', 'Li2O'].")
    space_groups: list[int] = Field(default_factory=lambda: list(range(2, 231)), description="Space groups to sample.")
    formula_units: list[int] = Field(default_factory=lambda: [1, 2, 4], description="Formula units per cell.")
    n_seeds: int = Field(1, ge=1, description="Random structures per (composition, space group, Z).")


class FileSource(BaseModel):
    """Candidates read from user files (CIF, POSCAR, extxyz, ASE db, pymatgen JSON; folders and globs)."""

    model_config = _STRICT
    paths: list[str] = Field(description="Files, folders or glob patterns.")
    order_disordered: bool = Field(False, description="Order partially occupied structures instead of flagging them.")
