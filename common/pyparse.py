"""``ast.parse`` that several threads may call at once.

CPython 3.11 keeps the depth counter of its AST-to-Python-object converter in interpreter-wide state,
so two threads parsing at the same moment can fail with "SystemError: AST constructor recursion depth
mismatch". CI hit it with 3.11.7: the sandbox pool's threads plan tests while the calling thread
extracts programs from answers. Every host-side parse goes through this lock; it costs nothing
measurable next to running the programs.
"""
from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse(source: str, mode: str = "exec") -> ast.AST:
    with _LOCK:
        return ast.parse(source, mode=mode)
