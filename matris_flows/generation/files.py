"""User files as candidates: CIF, POSCAR, extxyz, ASE db, pymatgen JSON; folders and globs.

Each file is read on its own, so one unreadable file becomes one ``unparseable``
rejection naming it, one structure that is no crystal (NaN coordinates, a singular
cell) one ``invalid_structure`` rejection, and the rest of the campaign goes on.

A file is a work unit identified by its path and the SHA-256 of its content
(:func:`list_file_units`), not by its position in a folder listing: a campaign planned
on a folder processes exactly the files it was planned with, whatever happened to the
folder since (a file deleted or changed in between becomes a rejection saying so).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.transformations.standard_transformations import OrderDisorderedStructureTransformation

from matris_flows.core.serialization import safe_loadfn
from matris_flows.core.validity import structure_problem
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


FileUnit = tuple[str, str | None, str | None]
"""One file work unit: ``(path, content digest, problem)``; the digest is None for an
unreadable file or an input that names nothing (whose ``problem`` says why)."""


def file_digest(path: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes: its content's identity in a campaign plan."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def list_file_units(inputs: Sequence[str | Path]) -> list[FileUnit]:
    """The work units of ``inputs``: :func:`expand_paths` with each file's :func:`file_digest`."""
    units: list[FileUnit] = []
    for path, problem in expand_paths(inputs):
        digest = None
        if problem is None:
            with contextlib.suppress(OSError):  # unreadable now: reading it says why, in its own rejection
                digest = file_digest(path)
        units.append((path, digest, problem))
    return units


def planned_file_problem(path: str, digest: str) -> str | None:
    """Why the file at ``path`` is not the one a campaign planned with content ``digest``, or None."""
    if not Path(path).is_file():
        return f"{path} no longer exists (it was listed when the campaign was planned)"
    try:
        now = file_digest(path)
    except OSError as exc:
        return f"{path} can no longer be read ({exc})"
    if now != digest:
        return (
            f"{path} changed since the campaign was planned (sha256 {digest}..., now {now}...); "
            "start a new campaign (or --fresh) to screen the new content"
        )
    return None


def poscar_count_problem(text: str) -> str | None:
    """Why a POSCAR's atom counts disagree with its coordinate lines, or None (also when the header is not found).

    pymatgen reads as many coordinate lines as the counts declare and ignores the rest of
    the block, so a file listing more atoms than it declares would be read truncated.
    Coordinate lines run from the line after ``Direct``/``Cartesian`` to the first blank
    line (velocities follow one) or the first line not starting like a number (``Lattice
    velocities and vectors``).
    """
    lines = [line.split("#")[0].strip() for line in text.rstrip().split("\n")]

    def is_counts(line: str) -> bool:
        return bool(line) and all(token.isdigit() for token in line.split())

    i = 5  # comment, scale and three lattice lines come first
    while i < len(lines) and not is_counts(lines[i]):  # the species line(s) of VASP 5/6
        i += 1
    counts: list[int] = []
    while i < len(lines) and is_counts(lines[i]):  # more than 20 species groups take several lines
        counts.extend(int(token) for token in lines[i].split())
        i += 1
    if i < len(lines) and lines[i][:1] in ("s", "S"):  # Selective dynamics
        i += 1
    i += 1  # Direct / Cartesian
    if not counts or i > len(lines):
        return None
    listed = 0
    while i + listed < len(lines) and lines[i + listed][:1] in tuple("0123456789+-."):
        listed += 1
    declared = sum(counts)
    if listed == declared:
        return None
    return f"declares {declared} atoms (counts {' '.join(map(str, counts))}) but lists {listed} coordinate lines"


def _from_poscar(path: str) -> list[Structure]:
    from monty.io import zopen
    from pymatgen.io.vasp import Poscar

    with zopen(path, mode="rt", encoding="utf-8") as handle:
        text = handle.read()
    problem = poscar_count_problem(text)
    if problem is not None:
        raise ValueError(problem)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        structure = Poscar.from_str(text).structure
    if any("cannot be determined" in str(w.message) for w in caught):
        # pymatgen would name the species H, He, Li, ... in order: a wrong structure, not a guess
        raise ValueError("names no elements (a VASP 4 POSCAR without a species line or symbols after the coordinates)")
    return [structure]


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
                structures = _from_poscar(path)
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


def iter_one_file(
    path: str,
    problem: str | None = None,
    order_disordered: bool = False,
    n_orderings: int = 1,
    digest: str | None = None,
) -> Iterator[Candidate | RejectedCandidate]:
    """Candidates (or rejections) from one expanded path; ``problem`` is set for missing inputs.

    With ``digest`` (the :func:`file_digest` the file was planned with), a file deleted or
    changed since is rejected (``invalid_input``) instead of read.
    """
    if problem is None and digest is not None:
        problem = planned_file_problem(path, digest)
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
        # before anything native (ordering, neighbour lists, symmetry) sees a NaN or a singular cell
        invalid = structure_problem(structure)
        if invalid is not None:
            yield RejectedCandidate(
                reason=RejectionReason.INVALID_STRUCTURE, message=f"{input_name}: invalid structure: {invalid}",
                input_name=input_name, provenance=base,
            )
            continue
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
