"""Pull the program out of a model's answer.

Markdown code blocks are preferred (python-tagged first, then untagged); otherwise the longest
contiguous span of lines that parses with ``ast``. The program is then cut at the first
``if __name__ == "__main__":`` block, unittest/pytest scaffolding, and trailing top-level asserts
(the model's own tests must not decide its reward).
"""
from __future__ import annotations

import ast
import re

from common.pyparse import parse

MAX_LINES = 500  # the longest-span search is quadratic: cap the answer it looks at
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def _parses(src: str) -> bool:
    try:
        parse(src)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def longest_parsable_span(text: str, max_lines: int = MAX_LINES) -> str:
    """The longest contiguous run of lines that is valid Python.

    A brute-force search over all spans is quadratic in parses; instead, split at the line the parser
    reports as wrong and recurse on both sides (a span that parses cannot contain that line in the
    same context), so each line is parsed O(depth) times."""
    lines = text.splitlines()[:max_lines]
    best = (0, 0)
    stack = [(0, len(lines))]
    while stack:
        lo, hi = stack.pop()
        if hi - lo <= best[1] - best[0]:
            continue  # cannot beat the best span found
        chunk = "\n".join(lines[lo:hi])
        try:
            parse(chunk)
        except SyntaxError as e:
            bad = lo + max(1, min(e.lineno or 1, hi - lo)) - 1
            stack += [(lo, bad), (bad + 1, hi)]
            if bad > lo:  # the error may belong to the line before (an unclosed bracket)
                stack.append((lo, bad - 1))
            continue
        except (ValueError, RecursionError, MemoryError):
            continue
        if chunk.strip():
            best = (lo, hi)
    return "\n".join(lines[best[0]:best[1]])


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
    candidates = [b for lang, b in blocks if lang in ("python", "py", "python3")] or [b for lang, b in blocks if not lang]
    for body in sorted(candidates, key=len, reverse=True):
        if _parses(body):
            return _cut_scaffolding(body)
    # no fenced block parses (e.g. a truncated answer): fall back to the longest parsable span
    source = candidates[0] if candidates else answer
    span = longest_parsable_span(source)
    return _cut_scaffolding(span) if span.strip() else ""
