"""Best-of-N arithmetic: selection ties and missing scores, the four columns, N-prefixes."""
from __future__ import annotations

import math

import pytest

from rewards.bon import bon_columns, format_table, select_best, summarize


def test_select_best_ties_and_missing_scores():
    assert select_best([0.1, 0.7, 0.7, 0.2]) == 1  # ties: lowest index
    assert select_best([None, float("nan"), -5.0]) == 2  # a number beats None and NaN
    assert select_best([None, None]) == 0
    assert select_best([float("-inf"), None]) == 0
    with pytest.raises(ValueError):
        select_best([])


def test_columns_by_hand():
    passes = [[False, True, False, False],   # one of four passes
              [False, False, False, False],  # none
              [True, True, True, True]]      # all
    scores = [[0.0, 1.0, 2.0, None],         # best-of-4 picks index 2 (fails); best-of-2 picks 1 (passes)
              [3.0, 1.0, 0.0, 0.0],
              [None, None, None, None]]      # unscored: index 0
    four = bon_columns(passes, scores, 4)
    assert four["average"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert four["oracle"] == pytest.approx(2 / 3)
    assert four["rm"] == pytest.approx(1 / 3)
    two = bon_columns(passes, scores, 2)  # the first two samples of each task only
    assert two == pytest.approx({"average": (0.5 + 0 + 1) / 3, "oracle": 2 / 3, "rm": 2 / 3})
    assert "rm" not in bon_columns(passes, None, 4)
    with pytest.raises(ValueError, match="best-of-5"):
        bon_columns(passes, scores, 5)


def test_summary_and_table():
    s = summarize([True, False], [[True, False], [False, False]], [[0.0, 1.0], [1.0, 0.0]], [1, 2])
    assert s["tasks"] == 2 and s["greedy"] == 0.5
    assert s["best_of"]["1"] == {"average": 0.5, "oracle": 0.5, "rm": 0.5}
    assert s["best_of"]["2"] == {"average": 0.25, "oracle": 0.5, "rm": 0.0}
    table = format_table({"humaneval": s})
    assert "humaneval" in table and "   50.0" in table and table.count("\n") == 3
    assert math.isnan(summarize([], [], None, [1])["greedy"])
