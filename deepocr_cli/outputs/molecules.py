"""SMILES from deep-parsed chemistry figures: recognise, validate and describe with RDKit, draw."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deepocr_cli.outputs.atomic import atomic_write_bytes

#: Longest SMILES handed to RDKit; PubChem-sized molecules stay far below this, a runaway answer does not.
MAX_SMILES_LEN = 1000
#: An unbranched chain without rings, bonds or brackets counts as SMILES only from this many atoms on, so that
#: words such as "CO", "CCC" or "COPS" stay prose; real answers that short always carry other evidence.
MIN_PLAIN_CHAIN_ATOMS = 6

# One SMILES token: bracket atom, organic-subset atom (aromatic lowercase too), ring label, bond, branch, dot.
_SMILES_TOKEN_RE = re.compile(
    r"(?P<bracket>\[\d{0,3}(?:[A-Z][a-z]?|[bcnops]|se|as|\*)(?:@@?)?(?:H\d?)?(?:[+-]{1,2}\d?)?(?::\d+)?\])"
    r"|(?P<atom>Cl|Br|[BCNOPSFI]|[bcnops]|\*)"
    r"|(?P<ring>%\d{2}|\d)"
    r"|(?P<bond>[-=#$:/\\])"
    r"|(?P<branch>[()])"
    r"|(?P<dot>\.)"
)

def smiles_tokens(text: str) -> list[tuple[str, str]] | None:
    """Split text into (kind, token) SMILES tokens; None if a character is not SMILES or no atom occurs."""
    if not text or len(text) > MAX_SMILES_LEN:
        return None
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _SMILES_TOKEN_RE.match(text, pos)
        if m is None:
            return None
        tokens.append((m.lastgroup or "", m.group()))
        pos = m.end()
    if not any(kind in ("atom", "bracket") for kind, _ in tokens):
        return None
    return tokens


def looks_like_smiles(token: str) -> bool:
    r"""Whether a lone token should be read as SMILES rather than as a word or a number.

    The token must consist of SMILES tokens only and hold at least two atoms, plus structural evidence that
    prose does not produce: a bracket atom (``[Na+]``), a branch ``(...)``, a double/triple/stereo bond
    (``= # $ / \\``), or ring-closure labels that pair up (``c1ccccc1``). Lowercase aromatic atoms alone are
    no evidence ("no", "cons" are words; real aromatic atoms always sit in a numbered ring). Without evidence,
    a plain chain counts only if RDKit parses it and it has `MIN_PLAIN_CHAIN_ATOMS` atoms, which keeps "CO",
    "CCC" and all numbers out. Explicit single bonds ``-`` are no evidence either ("CO-OP").
    """
    tokens = smiles_tokens(token)
    if tokens is None:
        return False
    n_atoms = sum(kind in ("atom", "bracket") for kind, _ in tokens)
    if n_atoms < 2:
        return False
    kinds = {kind for kind, _ in tokens}
    rings = [t for kind, t in tokens if kind == "ring"]
    paired_rings = bool(rings) and all(rings.count(label) % 2 == 0 for label in set(rings))
    bonds = any(kind == "bond" and t in "=#$/\\" for kind, t in tokens)
    if "bracket" in kinds or "branch" in kinds or bonds or paired_rings:
        return True
    return n_atoms >= MIN_PLAIN_CHAIN_ATOMS and analyze_smiles(token)["valid"]


def analyze_smiles(smiles: str) -> dict[str, Any]:
    """Validate a SMILES string with RDKit and describe the molecule.

    Args:
        smiles: the SMILES as the model wrote it.

    Returns:
        ``{"smiles", "canonical_smiles", "valid", "formula", "mol_weight"}``; for an invalid string only
        ``smiles`` is set and ``valid`` is False (the string is never repaired). RDKit's parse errors are
        silenced; they are expected for model output.
    """
    result: dict[str, Any] = {"smiles": smiles, "canonical_smiles": None, "valid": False}
    result.update(formula=None, mol_weight=None)
    mol = _mol_from_smiles(smiles)
    if mol is None:
        return result
    from rdkit import Chem
    from rdkit.Chem import Descriptors, rdMolDescriptors

    result.update(
        canonical_smiles=Chem.MolToSmiles(mol),
        valid=True,
        formula=rdMolDescriptors.CalcMolFormula(mol),
        mol_weight=round(Descriptors.MolWt(mol), 2),
    )
    return result


def _mol_from_smiles(smiles: str) -> Any:
    """RDKit molecule or None; empty, oversized and unparsable strings are None, without RDKit log noise."""
    smiles = smiles.strip()
    if not smiles or len(smiles) > MAX_SMILES_LEN or any(c.isspace() for c in smiles):
        return None
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        try:
            mol = Chem.MolFromSmiles(smiles)
        except Exception:  # noqa: BLE001 - RDKit raises a zoo of types on hostile input; all mean "invalid"
            return None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def render_molecule_png(smiles: str, path: Path, size: int = 400) -> bool:
    """Draw a molecule to a PNG file with RDKit, written atomically.

    Args:
        smiles: the SMILES to draw.
        path: destination; its parent folder is created.
        size: width and height in pixels.

    Returns:
        True when written, False when the SMILES is invalid (nothing is written).

    Raises:
        ValueError: size is too small to draw anything.
        OutputError: the file cannot be written.
    """
    if size < 32:
        raise ValueError(f"molecule image size must be at least 32 px, got {size}")
    mol = _mol_from_smiles(smiles)
    if mol is None:
        return False
    from rdkit.Chem.Draw import rdMolDraw2D

    drawer = rdMolDraw2D.MolDraw2DCairo(size, size)
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    data: bytes = drawer.GetDrawingText()
    atomic_write_bytes(path, data)
    return True


__all__ = ["analyze_smiles", "looks_like_smiles", "render_molecule_png"]
