"""Tests for deepocr_cli.planning.autoplan: mode choice at the boundaries and escalation rules."""

from __future__ import annotations

import pytest

from deepocr_cli.planning.autoplan import (
    MIN_TEXT_PX,
    PLAN_SAFETY,
    ModeChoice,
    choose_mode,
    needs_escalation,
    next_mode,
    text_px,
)
from deepocr_cli.planning.estimate import TextEstimate
from deepocr_cli.planning.modes import Mode, vision_tokens

A4 = (595.0, 842.0)
LEGIBLE = 10 / 842  # 10-pt text on A4: 6 px in Tiny, 12 px in Base


def est(tokens: float, min_text_height: float | None = None, source: str = "image") -> TextEstimate:
    return TextEstimate(tokens, source, int(tokens * 3.5), 0, 10, min_text_height)


def test_exactly_at_target_keeps_the_cheaper_mode_and_just_above_escalates():
    assert PLAN_SAFETY["image"] == 1.0
    at = choose_mode(est(640.0), *A4)  # Tiny = 64 vision tokens -> ratio exactly 10
    assert (at.mode, at.vision_tokens, at.predicted_ratio) == (Mode.TINY, 64, 10.0)
    above = choose_mode(est(640.5), *A4)
    assert above.mode is Mode.SMALL and above.predicted_ratio == pytest.approx(6.405)
    assert choose_mode(est(1000.0), *A4).mode is Mode.SMALL
    assert choose_mode(est(1001.0), *A4).mode is Mode.BASE
    assert choose_mode(est(4001.0), *A4).mode is Mode.GUNDAM


def test_text_layer_estimates_are_planned_with_a_safety_factor():
    s = PLAN_SAFETY["text_layer"]
    assert 1.0 < s < 1.5
    at = choose_mode(est(640.0 / s, source="text_layer"), *A4)  # 640 tokens after the safety factor
    assert at.mode is Mode.TINY and at.predicted_ratio == pytest.approx(10.0 / s)
    assert "safety" in at.reason
    # an estimate that would just fit Tiny on its own needs Small once the text layer's under-count risk counts
    assert choose_mode(est(600.0, source="text_layer"), *A4).mode is Mode.SMALL
    assert choose_mode(est(600.0, source="text_layer"), *A4, safety=1.0).mode is Mode.TINY
    assert choose_mode(est(3600.0, source="text_layer"), *A4).mode is Mode.GUNDAM  # Large: 9 -> 10.2
    with pytest.raises(ValueError):
        choose_mode(est(10.0), *A4, safety=0)


def test_gundam_uses_the_page_grid():
    choice = choose_mode(est(5000.0), *A4)
    assert choice.mode is Mode.GUNDAM and choice.grid == (2, 3)
    assert choice.vision_tokens == vision_tokens(Mode.GUNDAM, (2, 3)) == 856
    assert choice.predicted_ratio == pytest.approx(5000 / 856)


def test_over_budget_takes_largest_allowed_mode():
    choice = choose_mode(est(20000.0), *A4)
    assert choice.mode is Mode.GUNDAM and choice.reason.startswith("over budget")
    capped = choose_mode(est(20000.0), *A4, max_mode=Mode.LARGE)
    assert capped.mode is Mode.LARGE and capped.reason.startswith("over budget")


def test_min_and_max_mode_bounds():
    assert choose_mode(est(100.0), *A4, min_mode=Mode.BASE).mode is Mode.BASE
    assert choose_mode(est(3000.0), *A4, max_mode=Mode.SMALL).mode is Mode.SMALL
    with pytest.raises(ValueError):
        choose_mode(est(1.0), *A4, min_mode=Mode.LARGE, max_mode=Mode.SMALL)


def test_empty_page_gets_cheapest_allowed_mode():
    assert choose_mode(est(0.0), *A4).mode is Mode.TINY
    assert choose_mode(est(0.0), *A4, min_mode=Mode.SMALL).reason == "empty page"
    assert choose_mode(est(0.0), 500, 3000).mode is Mode.TINY  # even when elongated


def test_elongated_page_goes_to_gundam():
    receipt = choose_mode(est(200.0, LEGIBLE), 300.0, 1000.0)  # aspect 3.3
    assert receipt.mode is Mode.GUNDAM and "elongated" in receipt.reason
    assert receipt.grid[1] > receipt.grid[0]
    assert choose_mode(est(200.0, LEGIBLE), 400.0, 960.0).mode is not Mode.GUNDAM  # aspect 2.4


def test_tiny_print_forces_more_resolution():
    big_print = choose_mode(est(300.0, 20 / 842), *A4)  # 20 pt: 12 px in Tiny
    assert big_print.mode is Mode.TINY
    body = choose_mode(est(300.0, 10 / 842), *A4)  # 10 pt: 6.1 / 7.6 / 12.2 px in Tiny / Small / Base
    assert body.mode is Mode.BASE and "illegible" in body.reason
    tiny = choose_mode(est(300.0, 6 / 842), *A4)  # 6 pt: 7.3 px in Base, 9.1 in Large
    assert tiny.mode is Mode.LARGE
    micro = choose_mode(est(300.0, 4.5 / 842), *A4)  # 4.5 pt: 5.5 in Base, 6.8 in Large, 10.3 in Gundam tiles
    assert micro.mode is Mode.GUNDAM
    unreadable = choose_mode(est(300.0, 2 / 842), *A4)
    assert unreadable.mode is Mode.GUNDAM and unreadable.reason.startswith("text too small")


def test_text_px_geometry():
    assert text_px(Mode.BASE, *A4, 10 / 842, (1, 1)) == pytest.approx(1024 * 10 / 842)
    # Gundam 2x3 tiles: 1280 x 1920 px over 595 x 842 pt -> min(2.15, 2.28) px/pt
    assert text_px(Mode.GUNDAM, *A4, 10 / 842, (2, 3)) == pytest.approx(10 * 1280 / 595)
    assert MIN_TEXT_PX == 9.0


def test_choice_json():
    d = choose_mode(est(640.0), *A4).to_json()
    assert (
        d["mode"] == "tiny"
        and d["grid"] == [1, 1]
        and d["vision_tokens"] == 64
        and d["predicted_ratio"] == 10.0
    )
    assert isinstance(ModeChoice(Mode.BASE, (1, 1), 256, 1.0, "x").to_json()["reason"], str)


def test_next_mode_walks_the_order_and_stops_at_the_cap():
    assert next_mode(Mode.TINY) is Mode.SMALL
    assert next_mode(Mode.LARGE) is Mode.GUNDAM
    assert next_mode(Mode.GUNDAM) is None
    assert next_mode(Mode.BASE, max_mode=Mode.BASE) is None
    assert next_mode(Mode.SMALL, max_mode=Mode.BASE) is Mode.BASE


def test_needs_escalation():
    assert needs_escalation(True, None, 10.0)
    assert needs_escalation(True, 1.0, 10.0)
    assert not needs_escalation(False, None, 10.0)
    assert not needs_escalation(False, 12.5, 10.0)  # exactly target * margin is tolerated
    assert needs_escalation(False, 12.51, 10.0)
    assert needs_escalation(False, 11.0, 10.0, margin=1.0)
