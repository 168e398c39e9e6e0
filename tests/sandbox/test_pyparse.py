"""Host-side parsing is serialised: CPython 3.11's AST converter keeps its depth counter per
interpreter, and two threads parsing at once failed CI with "AST constructor recursion depth
mismatch" (the pool's threads plan tests while the caller extracts programs)."""
import ast
import threading

from common import pyparse
from common.extract import extract_code
from sandbox.checks import plan_test


def _blocked_while_locked(fn) -> bool:
    done = threading.Event()
    with pyparse._LOCK:
        t = threading.Thread(target=lambda: (fn(), done.set()))
        t.start()
        waited = not done.wait(0.2)
    t.join(5)
    return waited and done.is_set()


def test_parse_waits_for_other_parsers():
    assert isinstance(pyparse.parse("x = 1"), ast.Module)
    assert _blocked_while_locked(lambda: pyparse.parse("y = 2"))


def test_the_sandbox_and_the_extractor_parse_through_the_lock():
    assert _blocked_while_locked(lambda: plan_test("assert f(1) == 9876543"))
    assert _blocked_while_locked(lambda: extract_code("def g():\n    return 5\n"))
