"""Loop detection: loops of every shape are found and cut to one copy; real repeated structure is left alone."""

from __future__ import annotations

import time

import pytest

from deepocr_cli.outputs.repetition import (
    MIN_COPIES_AT_END,
    MIN_COPIES_CONTENTLESS,
    MIN_COPIES_INSIDE,
    cut_loops,
    find_loops,
    is_loop,
)

SENTENCE = "The Board shall meet at least four times a year at the registered office.\n"
ROW = "<tr><td>Accounts receivable</td><td>12,480</td><td>11,902</td><td>4.9%</td></tr>"
CJK = "本公司董事会及全体董事保证本公告内容不存在任何虚假记载、误导性陈述或者重大遗漏。"


def one(text: str):
    loops = find_loops(text)
    assert len(loops) == 1, loops
    return loops[0]


# --- loops that must be found ------------------------------------------------------------------------


def test_line_loop_ending_with_eos_is_cut_to_one_copy() -> None:
    text = "## Article 12\n\n" + SENTENCE * 30
    loop = one(text)
    assert (loop.copies, loop.start, loop.at_end) == (30, len("## Article 12\n\n"), True)
    assert loop.unit == SENTENCE.strip() and loop.period == len(SENTENCE)
    assert cut_loops(text, [loop]) == "## Article 12\n\n" + SENTENCE.rstrip()


def test_table_row_loop_keeps_the_table_closed() -> None:
    text = "<table><tr><td>Item</td><td>2024</td></tr>" + ROW * 40 + "</table>"
    loop = one(text)
    assert loop.copies == 40 and loop.unit == ROW
    assert cut_loops(text, [loop]) == "<table><tr><td>Item</td><td>2024</td></tr>" + ROW + "</table>"


def test_cjk_phrase_loop_without_any_newline() -> None:
    text = "公告\n" + CJK * 12
    loop = one(text)
    assert loop.copies == 12 and loop.unit == CJK
    assert cut_loops(text, [loop]) == "公告\n" + CJK


def test_repeated_grounded_blocks_count_even_when_their_boxes_move() -> None:
    blocks = "".join(
        f"<|ref|>text<|/ref|><|det|>[[100, {200 + 40 * k}, 900, {230 + 40 * k}]]<|/det|>\nKeep this notice.\n\n"
        for k in range(12)
    )
    loop = one("<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n# Permit\n\n" + blocks)
    assert loop.copies == 12 and loop.unit.startswith("<|ref|>text<|/ref|>")  # starts at the ref
    kept = cut_loops(blocks, find_loops(blocks))
    assert kept.count("Keep this notice.") == 1 and kept.count("<|ref|>") == 1


def test_truncated_loop_drops_the_cut_off_last_copy_too() -> None:
    text = "Rules\n" + "Section 4.2 applies to every tenant without exception. " * 20 + "Section 4.2 app"
    loop = one(text)
    assert loop.copies == 20
    assert cut_loops(text, [loop]).rstrip() == "Rules\nSection 4.2 applies to every tenant without exception."


def test_two_line_period_is_one_unit() -> None:
    two = "Step 3: Tighten the bolts.\nStep 4: Check the wheel for play.\n"
    loop = one("Step 1: Loosen the nuts.\n" + two * 10)
    assert loop.copies == 10 and loop.unit == " ".join(two.split())


def test_loop_in_the_middle_needs_more_copies_then_is_found() -> None:
    mid = "All measurements were taken at room temperature unless stated otherwise.\n"
    after = "\n## 5 Results\n\nThe yield rose from 61% to 78% with the new catalyst.\n"
    assert find_loops(mid * (MIN_COPIES_INSIDE - 1) + after) == []
    loop = one(mid * MIN_COPIES_INSIDE + after)
    assert not loop.at_end
    assert cut_loops(mid * MIN_COPIES_INSIDE + after, [loop]) == mid + after


def test_two_separate_loops_on_one_page() -> None:
    a = "First looping sentence about the quarterly budget of the council.\n"
    b = "<tr><td>Second loop row</td><td>1,000</td><td>2,000</td><td>3,000</td></tr>"
    text = a * 10 + "\nA normal paragraph in between with several words.\n\n<table>" + b * 30 + "</table>"
    loops = find_loops(text)
    assert [lp.copies for lp in loops] == [10, 30]
    kept = cut_loops(text, loops)
    assert kept.count(a) == 1 and kept.count(b) == 1 and kept.endswith("</table>")


def test_offsets_describe_the_text_given() -> None:
    text = "Intro.\n" + SENTENCE * 6
    loop = one(text)
    assert text[loop.start : loop.start + loop.period] == SENTENCE
    assert loop.cut == (loop.start + len(SENTENCE.rstrip()), len(text))


# --- real repeated structure that must be left alone ---------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # a bus timetable: same destinations on every row, different times
        "<table><tr><td>Departs</td><td>To</td></tr>"
        + "".join(f"<tr><td>{h:02d}:{m:02d}</td><td>Central Station</td></tr>" for h in range(6, 12) for m in (0, 30))
        + "</table>",
        # a sign-in form with eighteen identical blank rows
        "<table><tr><td>Name</td><td>Company</td><td>Signature</td></tr>"
        + "<tr><td></td><td></td><td></td></tr>" * 18 + "</table>",
        # a price list with dot leaders
        "\n".join(f"{item} {'.' * (30 - len(item))} {price}" for item, price in
                  [("Espresso", "2.20"), ("Americano", "2.60"), ("Latte", "3.20"), ("Mocha", "3.50")]),
        # a financial table with rows of zeros and dashes
        "<table><tr><td>Item</td><td>Q1</td><td>Q2</td></tr>" + "<tr><td>–</td><td>0</td><td>0</td></tr>" * 9
        + "<tr><td>Total</td><td>120</td><td>95</td></tr></table>",
        # four signature lines at the end of a contract
        "IN WITNESS WHEREOF the parties have signed.\n" + "Signature: ____________ Date: ________\n" * 4,
        # an answer grid: numbered rows of identical bubbles
        "<table>" + "".join(f"<tr><td>{i}</td><td>○</td><td>○</td><td>○</td><td>○</td></tr>" for i in range(1, 21))
        + "</table>",
        # a refrain sung three times
        "Chorus:\n" + "Row, row, row your boat gently down the stream, merrily merrily life is but a dream.\n" * 3,
        # a dotted rule line of a form, and a long rule of dashes
        "Comments:\n" + "." * 90 + "\n" + "-" * 80,
        # a CJK form with repeated empty fields
        "姓名：＿＿＿＿ 电话：＿＿＿＿\n" * 3 + "签名：＿＿＿＿",
    ],
    ids=["timetable", "blank-form", "price-list", "zero-rows", "signatures", "answer-grid", "refrain",
         "rules", "cjk-form"],
)
def test_real_repeated_structure_is_not_a_loop(text: str) -> None:
    assert find_loops(text) == []


def test_rule_thresholds() -> None:
    assert is_loop(MIN_COPIES_AT_END, 12, at_end=True)
    assert not is_loop(MIN_COPIES_AT_END - 1, 100, at_end=True)
    assert not is_loop(MIN_COPIES_AT_END, 2, at_end=True)  # too few words over all copies
    assert not is_loop(MIN_COPIES_INSIDE - 1, 50, at_end=False)
    assert is_loop(MIN_COPIES_INSIDE, 5, at_end=False)
    assert not is_loop(MIN_COPIES_CONTENTLESS - 1, 0, at_end=True)
    assert is_loop(MIN_COPIES_CONTENTLESS, 0, at_end=True)


def test_empty_and_tiny_inputs() -> None:
    assert find_loops("") == [] and find_loops("a") == [] and cut_loops("abc", []) == "abc"


def test_a_full_page_of_distinct_text_is_quick() -> None:
    words = " ".join(f"w{(i * 7919) % 5003}" for i in range(8000))
    start = time.perf_counter()
    assert find_loops(words) == []
    assert time.perf_counter() - start < 5  # a guard against a quadratic blow-up, not a benchmark


# --- loops that drift (the no-repeat rule forces small changes) and loops that count ----------------------


def test_drifting_loop_is_found_and_cut_after_its_first_time() -> None:
    variants = ["Vorstellung täglich um 5 und 8 Uhr abends im großen Saal",
                "Vorstellung täglich um 5 und 8 Uhr abends im großen Saale",
                "Vorstellung täglich um 5 und 8 Uhr abends im gros sen Saal",
                "Vorstellung täglich um 5 und 8 Uhr abends im großen Saal. Kassa"]
    text = "Spielplan\n\n" + "\n\n".join(variants[k % 4] for k in range(12))
    loop = one(text)
    assert (loop.kind, loop.copies) == ("drift", 12)
    assert cut_loops(text, [loop]).rstrip() == "Spielplan\n\n" + variants[0]


def test_cjk_drifting_loop() -> None:
    lines = [f"本公司董事会保证公告内容真实准确完整{tail}" for tail in ("。", "，", "！", "")]
    loop = one("公告\n" + "\n".join(lines[k % 4] for k in range(12)))
    assert loop.kind == "drift" and loop.copies >= 10


def test_counting_loop_at_the_end_and_inside() -> None:
    counting = " ".join(str(100 * k) for k in range(1, 61))
    loop = one("Scale: " + counting)
    assert (loop.kind, loop.copies, loop.at_end) == ("count", 60, True)
    assert cut_loops("Scale: " + counting, [loop]) == "Scale: 100"
    inside = "Scale: " + " ".join(str(k) for k in range(1, 61)) + "\n\nThe rest of the page goes on here with words."
    assert find_loops(inside) == []  # 60 numbers followed by text: counting needs 100 inside a page
    assert one("Scale: " + ", ".join(str(k) for k in range(5, 510, 5)) + "\n\nMore text follows.").kind == "count"


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(str(k) for k in range(1, 29)) + "\n\nCOMES NOW the Plaintiff.",  # margin line numbers
        " ".join(str(k) for k in range(0, 110, 10)) + "\n\nFigure 3: axis",  # axis labels
        "\n".join(f"{k}. Item number {k} is a different thing: {w}" for k, w in
                  enumerate(["bread", "milk", "tea", "eggs", "rice", "salt", "oil", "jam"] * 6, 1)),
        # a phrase that comes back in every paragraph of a long page: spread out, not a loop
        "\n\n".join(f"Clause {k}. " + " ".join(f"w{k}x{i}" for i in range(60)) + " subject to the terms and conditions"
                    " of this agreement" for k in range(12)),
        # a table whose rows share a long phrase but name a different store each
        "<table>" + "".join(f"<tr><td>Store {k}</td><td>{city}</td><td>Available in all stores nationwide from May"
                            "</td></tr>" for k, city in enumerate(["Oslo", "Bergen", "Trondheim", "Stavanger", "Bodø",
                            "Tromsø", "Ålesund", "Drammen", "Fredrikstad", "Skien", "Kristiansand", "Moss"], 12))
        + "</table>",
        # a timetable whose rows differ only in their times
        "<table>" + "".join(f"<tr><td>{h:02d}:{m:02d}</td><td>Does not run on public holidays or Sundays</td></tr>"
                            for h in range(6, 12) for m in (15, 45)) + "</table>",
    ],
    ids=["line-numbers", "axis-labels", "numbered-list", "spread-phrase", "shared-phrase-table", "timetable-note"],
)
def test_numbers_and_recurring_phrases_are_not_loops(text: str) -> None:
    assert find_loops(text) == []
