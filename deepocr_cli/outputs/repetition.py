"""Find the loops DeepSeek-OCR falls into, in finished output, and cut them down to one copy.

The official n-gram blocking (facts §4.4) only forbids an exact 20-gram repeated inside a 50..90-token window,
so the model still loops with longer periods: a line, a table row, a list item or a CJK phrase written dozens of
times, sometimes followed by a normal end-of-sentence. Truncation (no EOS) catches only the loops that run into
the token limit; this module finds the others by looking for tandem repeats in the text itself.

The text is split into tokens that ignore whitespace and box coordinates: a word, a number, one CJK character,
one punctuation mark, one HTML tag or grounding tag, or a whole ``<|det|>...<|/det|>`` span (so a block repeated
with shifted boxes still counts as a copy). A run of ``k`` exact copies of a unit of ``p`` tokens is a loop when
the unit carries words (real repeated structure, such as blank form rows, dot leaders or rows of zeros, is
mostly tags and punctuation) and there are enough copies of enough words (see `is_loop`).

Because the no-repeat rule forbids exact repeats of short spans, real loops also *drift*: each copy differs a
little (a word split into letters, a bold marker moved). Those are found as a phrase of `NGRAM_WORDS` words that
keeps coming back densely while bringing almost nothing new; and a model that *counts* (``100 200 300 ...``) is
found as a long run of numbers in a constant step. Nothing here parses markup; the page parser runs on the cut
text.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

#: Longest unit searched, in tokens: a long paragraph or a wide table row.
MAX_PERIOD = 400
#: Fewest copies of a loop that runs to the end of the output (then EOS or the token limit).
MIN_COPIES_AT_END = 4
#: Fewest copies of a loop followed by other content (the model broke out of it and went on).
MIN_COPIES_INSIDE = 8
#: Fewest words (see `_weight`) over all copies, at the end of the output / inside it.
MIN_WORDS_AT_END = 24
MIN_WORDS_INSIDE = 40
#: A unit without any word (blank rows, rules, leaders) is a loop only beyond this many copies: a page cannot
#: hold that many real rows.
MIN_COPIES_CONTENTLESS = 100
#: At most this many loops are reported per page.
MAX_LOOPS = 4
#: Drifting loops: a phrase of this many words (at least `NGRAM_DISTINCT` different, `NGRAM_WEIGHT` in word
#: weight) that comes back this many times, densely (its copies cover `NGRAM_DENSITY` of the words between
#: the first and the last).
NGRAM_WORDS = 6
NGRAM_REPEATS = 10
NGRAM_DISTINCT = 4
NGRAM_WEIGHT = 5.0
NGRAM_DENSITY = 0.3
#: ... and brings almost no word not seen before on the page (at most this share) after its first time.
NGRAM_NOVELTY = 0.1
#: Counting loops: this many numbers in a constant step (``100 200 300 ...``) running to the end of the output,
#: or twice as many anywhere. Margin line numbers and axis labels stay far below.
MIN_COUNT = 50

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
_TOKEN_RE = re.compile(
    r"(?P<det><\|det\|>[^<]{0,400}?(?:<\|/det\|>|(?=<)|$))"
    r"|(?P<tag><\|/?[A-Za-z_]+\|>|<｜[^｜]{1,40}｜>|</?[A-Za-z][^<>]{0,200}>)"
    rf"|(?P<cjk>[{_CJK}])"
    rf"|(?P<word>(?:(?![{_CJK}])\w)+)"
    r"|(?P<punct>\S)"
)
_DIGITS_RE = re.compile(r"\d+")
_BOUNDARY_TAGS = ("<tr>", "<|ref|>", "<table>", "<tr")


@dataclass(frozen=True)
class Loop:
    """One run of repeated text and how it was cut.

    Attributes:
        start: character offset of the first copy in the text given to `find_loops`.
        period: characters of one copy (whitespace between copies included).
        period_tokens: tokens of one copy (see the module docstring).
        copies: complete copies found (a cut-off last copy is not counted).
        unit: the repeated text, whitespace collapsed, at most 160 characters.
        cut: ``(begin, end)`` character span removed from the text: every copy after the first.
        at_end: nothing but markup follows the loop (the model looped until it stopped).
        kind: ``exact`` (identical copies), ``drift`` (copies that vary a little, as the no-repeat rule forces
            them to: found by a phrase of `NGRAM_WORDS` words coming back again and again) or ``count`` (the
            model counting: numbers in a constant step).
    """

    start: int
    period: int
    period_tokens: int
    copies: int
    unit: str
    cut: tuple[int, int]
    at_end: bool
    kind: str = "exact"

    def to_json(self) -> dict:
        """A JSON-ready dict (the page's ``repetition`` entries)."""
        d = asdict(self)
        d["cut"] = list(self.cut)
        return d


def _weight(kind: str, text: str) -> float:
    """How much a token counts as words: a CJK character or a word 1, a bare number 0.5, markup 0."""
    if kind == "cjk":
        return 1.0
    if kind == "word":
        return 0.5 if text.isdigit() else 1.0
    return 0.0


def _tokenize(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[bool]]:
    """Token ids, start and end offsets, word weights and "starts a line or a row" flags (see `_Tokens`)."""
    ids: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    weights: list[float] = []
    boundary: list[bool] = []
    vocab: dict[str, int] = {}
    prev_end = 0
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup or "punct"
        tok = "<det>" if kind == "det" else m.group()
        ids.append(vocab.setdefault(tok, len(vocab)))
        starts.append(m.start())
        ends.append(m.end())
        weights.append(_weight(kind, tok))
        boundary.append(prev_end == 0 or "\n" in text[prev_end : m.start()] or tok.startswith(_BOUNDARY_TAGS))
        prev_end = m.end()
    return (
        np.asarray(ids, dtype=np.int64),
        np.asarray(starts, dtype=np.int64),
        np.asarray(ends, dtype=np.int64),
        np.asarray(weights, dtype=np.float64),
        boundary,
    )


def _squash(text: str) -> str:
    return " ".join(text.split())


def is_loop(copies: int, words_per_copy: float, at_end: bool) -> bool:
    """The decision rule, kept apart so that tests and the README can state it.

    Args:
        copies: complete copies in the run.
        words_per_copy: word weight of one copy (CJK character or word 1, bare number 0.5, markup 0).
        at_end: only markup follows the run.
    """
    if words_per_copy == 0:
        return copies >= MIN_COPIES_CONTENTLESS
    if at_end:
        return copies >= MIN_COPIES_AT_END and copies * words_per_copy >= MIN_WORDS_AT_END
    return copies >= MIN_COPIES_INSIDE and copies * words_per_copy >= MIN_WORDS_INSIDE


def _runs(ids: np.ndarray, period: int, min_len: int) -> list[tuple[int, int]]:
    """Maximal runs ``(a, length)`` where ``ids[i] == ids[i + period]`` for every i in the run."""
    eq = ids[:-period] == ids[period:]
    if not eq.any():
        return []
    padded = np.concatenate(([0], eq.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    out = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a >= min_len:
            out.append((int(a), int(b - a)))
    return out


def find_loops(text: str) -> list[Loop]:
    """Find the loops in one page of model output: exact copies first, then counting, then drifting copies.

    Args:
        text: the page's raw output (EOS removed); markup may be present.

    Returns:
        The loops, in text order, non-overlapping; at most `MAX_LOOPS`.
    """
    tok = _tokenize(text)
    if len(tok[0]) < 4:
        return []
    chosen = _exact(text, tok)
    for extra in (_counting(text, tok), _drifting(text, tok, chosen)):
        for loop in extra:
            if len(chosen) < MAX_LOOPS and not any(_overlap(loop, other) for other in chosen):
                chosen.append(loop)
    return sorted(chosen, key=lambda lp: lp.start)


def _overlap(a: Loop, b: Loop) -> bool:
    return a.start < b.cut[1] and b.start < a.cut[1]


def _exact(text: str, tok: tuple) -> list[Loop]:
    """Runs of identical copies (whitespace and box coordinates aside)."""
    ids, starts, ends, weights, boundary = tok
    n = len(ids)
    cum = np.concatenate(([0.0], np.cumsum(weights)))
    candidates: list[tuple[int, int, Loop]] = []
    for p in range(1, min(MAX_PERIOD, n // 2) + 1):
        for a, length in _runs(ids, p, p):  # at least two copies
            end = a + length + p  # periodic stretch is tokens [a, end)
            # Start the unit at a line or row start when one lies inside the first copy: the kept copy then
            # reads naturally and the cut falls between lines.
            first = next((i for i in range(a, a + p) if boundary[i]), a)
            if (end - first) // p < 2:
                first = a
            copies = (end - first) // p
            words = float(cum[first + p] - cum[first])
            tail_words = float(cum[n] - cum[end])
            at_end = tail_words <= 1.0
            if not is_loop(copies, words, at_end):
                continue
            # Cut from the end of the first copy to the end of the last, so the whitespace that followed
            # the last copy (a paragraph break, say) stays.
            cut_begin = int(ends[first + p - 1])
            unit_text = text[starts[first] : starts[first + p]]
            cut_end = int(ends[end - 1]) if end < n else len(text)
            if at_end and end < n:
                # The last copy was cut off mid-word by the token limit: the tail is how the unit goes on.
                phase = (end - first) % p
                going_on = text[starts[first + phase] : starts[first + p]] + unit_text
                if _squash(going_on).startswith(_squash(text[starts[end] :])):
                    cut_end = len(text)
            loop = Loop(
                start=int(starts[first]),
                period=len(unit_text),
                period_tokens=p,
                copies=copies,
                unit=" ".join(unit_text.split())[:160],
                cut=(cut_begin, cut_end),
                at_end=at_end,
            )
            candidates.append((end - first, -p, loop))
    chosen: list[Loop] = []
    for _, _, loop in sorted(candidates, key=lambda c: (c[0], c[1]), reverse=True):
        if any(_overlap(loop, other) for other in chosen):
            continue
        chosen.append(loop)
        if len(chosen) == MAX_LOOPS:
            break
    return chosen


def _number(text: str, start: int, end: int) -> int | None:
    token = text[start:end]
    return int(token) if token.isascii() and token.isdigit() and len(token) <= 12 else None


def _counting(text: str, tok: tuple) -> list[Loop]:
    """Numbers in a constant non-zero step, next to each other or with one repeated separator between."""
    ids_a, starts_a, ends_a, weights, _ = tok
    ids, starts, ends = ids_a.tolist(), starts_a.tolist(), ends_a.tolist()
    n = len(ids)
    values = [_number(text, a, b) if text[a].isdigit() else None for a, b in zip(starts, ends, strict=True)]
    cum = np.concatenate(([0.0], np.cumsum(weights)))
    found: list[Loop] = []
    i = 0
    while i < n:
        if values[i] is None:
            i += 1
            continue
        best = None
        for stride in (1, 2):
            j, step = i, None
            while values[i] is not None and j + stride < n and values[j + stride] is not None:
                if stride == 2 and (values[j + 1] is not None or ids[j + 1] != ids[i + 1]):
                    break
                d = values[j + stride] - values[j]  # type: ignore[operator]
                if d == 0 or (step is not None and d != step):
                    break
                step, j = d, j + stride
            count = (j - i) // stride + 1
            if best is None or count > best[0]:
                best = (count, stride, j, step)
        count, stride, j, step = best
        at_end = float(cum[n] - cum[j + 1]) <= 1.0
        if count >= (MIN_COUNT if at_end else 2 * MIN_COUNT):
            tail = text[int(ends[j]) :].strip()
            cut_end = len(text) if at_end and (not tail or tail.isdigit()) else int(ends[j])
            found.append(Loop(
                start=int(starts[i]), period=int(starts[i + stride] - starts[i]), period_tokens=stride,
                copies=count, unit=f"{text[starts[i]:ends[i]]} ... {text[starts[j]:ends[j]]} in steps of {step}",
                cut=(int(ends[i]), cut_end), at_end=at_end, kind="count",
            ))
            i = j + 1
        else:
            i += 1
    return found


def _drifting(text: str, tok: tuple, taken: list[Loop]) -> list[Loop]:
    """A phrase that keeps coming back with small changes around it (the no-repeat rule forces the drift)."""
    ids_a, starts_a, ends_a, weights_a, _ = tok
    ids, starts, ends, weights = ids_a.tolist(), starts_a.tolist(), ends_a.tolist(), weights_a.tolist()
    words = [i for i, w in enumerate(weights) if w > 0]
    word_ids = [ids[i] for i in words]
    first_seen: dict[int, int] = {}
    for w in words:
        first_seen.setdefault(ids[w], w)
    grams: dict[tuple, list[int]] = {}
    for k in range(len(words) - NGRAM_WORDS + 1):
        grams.setdefault(tuple(word_ids[k : k + NGRAM_WORDS]), []).append(k)
    found: list[Loop] = []
    for key, occ in sorted(grams.items(), key=lambda kv: len(kv[1]), reverse=True):
        if len(occ) < NGRAM_REPEATS or len(found) + len(taken) >= MAX_LOOPS:
            break
        first, last = words[occ[0]], words[occ[-1] + NGRAM_WORDS - 1]
        weight = sum(float(weights[w]) for w in words[occ[0] : occ[0] + NGRAM_WORDS])
        density = len(occ) * NGRAM_WORDS / (occ[-1] + NGRAM_WORDS - occ[0])
        if len(set(key)) < NGRAM_DISTINCT or weight < NGRAM_WEIGHT or density < NGRAM_DENSITY:
            continue
        # A loop brings (almost) nothing new after its first time; rows of a real table that share a phrase
        # bring new names and numbers every time.
        later = words[occ[1] : occ[-1] + NGRAM_WORDS]
        if sum(first_seen[ids[w]] == w for w in later) > NGRAM_NOVELTY * len(later):
            continue
        # Copies that differ only in their numbers are rows of a timetable or a numbered form, not a loop:
        # a loop's drift is in its letters, spacing and markup.
        cuts = [starts[words[k]] for k in occ]
        segments = {_DIGITS_RE.sub("0", " ".join(text[a:b].split())) for a, b in zip(cuts, cuts[1:], strict=False)}
        if len(segments) <= max(1, len(occ) // 5):
            continue
        # Keep everything up to the phrase's second coming; cut to the end of the line of its last.
        second = int(starts[words[occ[1]]])
        newline = text.rfind("\n", int(ends[words[occ[0] + NGRAM_WORDS - 1]]), second)
        begin = newline if newline >= 0 else int(ends[words[occ[1]] - 1])
        stop = int(ends[last])
        line_end = min((x for x in (text.find("\n", stop), text.find("<|", stop)) if x >= 0), default=len(text))
        loop = Loop(
            start=int(starts[first]), period=int(starts[words[occ[1]]] - starts[first]),
            period_tokens=int(words[occ[1]] - first), copies=len(occ),
            unit=" ".join(text[starts[w] : ends[w]] for w in words[occ[0] : occ[0] + NGRAM_WORDS]),
            cut=(begin, line_end), at_end=not text[line_end:].strip(), kind="drift",
        )
        if not any(_overlap(loop, other) for other in [*taken, *found]):
            found.append(loop)
    return found


def cut_loops(text: str, loops: list[Loop]) -> str:
    """Remove every copy after the first of each loop (a cut-off last copy included)."""
    out: list[str] = []
    pos = 0
    for loop in sorted(loops, key=lambda lp: lp.cut[0]):
        begin, end = loop.cut
        out.append(text[pos:begin])
        pos = end
    out.append(text[pos:])
    return "".join(out)
