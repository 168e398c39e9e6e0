"""Pull the program out of a model's answer.

Markdown code blocks are preferred (python-tagged first, then untagged); otherwise the longest
contiguous span of lines that parses with ``ast``. The program is then cut at the first
``if __name__ == "__main__":`` block, unittest/pytest scaffolding, and trailing top-level asserts
(the model's own tests must not decide its reward).
"""
from __future__ import annotations

import ast
import heapq
import re

from common.pyparse import parse

MAX_LINES = 500  # the longest-span search looks at this many lines of an answer at most
MAX_PARSES = 2000  # and parses at most this many spans (a few seconds on the longest answers)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def _parses(src: str) -> bool:
    try:
        parse(src)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def longest_parsable_span(text: str, max_lines: int = MAX_LINES, max_parses: int = MAX_PARSES) -> str:
    """The longest contiguous run of lines that is valid Python.

    A brute-force search over all spans is quadratic in parses; instead, split at the line the parser
    reports as wrong and search both sides (a span that parses cannot contain that line in the same
    context), plus the side that ends one line earlier (the error may belong to the line before, an
    unclosed bracket). The spans are tried longest first, each once, so the first one that parses is
    the answer. Without the longest-first order and the memory of tried spans, a truncated answer
    whose parser error always sits on its last line (an unclosed bracket near the top) made the
    search Fibonacci-exponential in its lines: one SmolLM2 answer held an evaluation for minutes.
    ``max_parses`` bounds the work on any text; past it the answer has no program."""
    lines = text.splitlines()[:max_lines]
    heap = [(-len(lines), 0, len(lines))]
    tried: set[tuple[int, int]] = set()
    parses = 0
    while heap and parses < max_parses:
        _, lo, hi = heapq.heappop(heap)
        if (lo, hi) in tried:
            continue
        tried.add((lo, hi))
        chunk = "\n".join(lines[lo:hi])
        if not chunk.strip():
            continue
        parses += 1
        try:
            parse(chunk)
        except SyntaxError as e:
            bad = lo + max(1, min(e.lineno or 1, hi - lo)) - 1
            for sub_lo, sub_hi in ((lo, bad), (bad + 1, hi), (lo, bad - 1)):
                if sub_hi > sub_lo:
                    heapq.heappush(heap, (-(sub_hi - sub_lo), sub_lo, sub_hi))
            continue
        except (ValueError, RecursionError, MemoryError):
            continue
        return chunk
    return ""


def _cut_scaffolding(src: str) -> str:
    """Drop `if __name__ == "__main__":`, unittest/pytest imports and classes, trailing asserts."""
    try:
        tree = parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return src
    lines = src.splitlines()
    keep_until = len(lines)
    for node in tree.body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
            keep_until = node.lineno - 1
            break
    body = [n for n in tree.body if n.lineno <= keep_until]
    # trailing top-level asserts and bare test calls after the last definition
    while body and isinstance(body[-1], ast.Assert):
        keep_until = body[-1].lineno - 1
        body.pop()
    drop: set[int] = set()
    for node in body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        if any(n.split(".")[0] in ("unittest", "pytest") for n in names):
            drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if isinstance(node, ast.ClassDef) and any("TestCase" in ast.unparse(b) for b in node.bases):
            drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    out = [line for i, line in enumerate(lines[:keep_until], start=1) if i not in drop]
    return "\n".join(out).rstrip() + "\n"


def extract_code(answer: str) -> str:
    """The program in an answer, or "" when there is none."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(answer)]
    candidates = ([b for lang, b in blocks if lang in ("python", "py", "python3")]
                  or [b for lang, b in blocks if not lang])
    for body in sorted(candidates, key=len, reverse=True):
        if _parses(body):
            return _cut_scaffolding(body)
    # no fenced block parses (e.g. a truncated answer): fall back to the longest parsable span
    source = candidates[0] if candidates else answer
    span = longest_parsable_span(source)
    return _cut_scaffolding(span) if span.strip() else ""
