"""Program extraction from answers: the longest-parsable-span fallback stays bounded on any text."""
from __future__ import annotations

import pytest

import common.extract as extract
from common.extract import extract_code, longest_parsable_span


@pytest.fixture
def parse_calls(monkeypatch):
    calls = []
    real = extract.parse

    def counting(src, mode="exec"):
        calls.append(src)
        return real(src, mode)

    monkeypatch.setattr(extract, "parse", counting)
    return calls


@pytest.mark.parametrize("line", ["x = [", "foo(", "print(max([1, 2,"])
def test_unclosed_brackets_on_every_line_take_few_parses(parse_calls, line):
    # Each span's error sits on its last line: the old depth-first search was Fibonacci-exponential here
    # (more than 20,000 parses for 30 lines; a truncated SmolLM2 answer held an evaluation for minutes).
    text = "\n".join([line] * 40)
    assert longest_parsable_span(text) == ""
    assert len(parse_calls) < 40 * 40


def test_parse_budget_bounds_any_text(parse_calls):
    text = "\n".join(["x = ["] * 400)
    longest_parsable_span(text, max_parses=50)
    assert len(parse_calls) <= 50


def test_longest_span_found_around_prose_and_a_truncated_tail():
    answer = ("Here is the function you asked for:\n"
              "def add(a, b):\n"
              "    return a + b\n"
              "\n"
              "def mul(a, b):\n"
              "    return a * b\n"
              "And a test: print(add(1,\n")
    span = longest_parsable_span(answer)
    assert "def add(a, b):" in span and "def mul(a, b):" in span
    assert "Here is" not in span and "print(" not in span
    assert extract_code("```python\ndef f(x):\n    return g(x,\n") == ""  # nothing parses in the block
    assert extract_code("```python\ndef f(x):\n    return x\nprint(f(\n").strip() == "def f(x):\n    return x"


def test_first_of_equally_long_spans_wins():
    text = "a = 1\n)\nb = 2"
    assert longest_parsable_span(text) == "a = 1"
