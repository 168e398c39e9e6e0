"""Host side: what the frames of one job say about each test, and the verdict of each test.

The harness relays frames (values, exceptions, test ends, timeouts, crashes); ``JobState`` collects
them and ``judge`` turns them into one ``TestResult`` per test, deciding host-compared tests with
sandbox/checks.py. Every test starts failed and passes only on positive evidence.
"""
from __future__ import annotations

import json
import struct

from .checks import DecodeError, HostEvalError, TestPlan, decode_value, host_eval
from .types import TestResult

_K = struct.Struct(">i")


class JobState:
    """What the host has learnt about one job so far, frame by frame."""

    def __init__(self, n: int):
        self.values: list[dict[int, object]] = [{} for _ in range(n)]
        self.exc: list[dict | None] = [None] * n
        self.done = [False] * n
        self.verdict: list[TestResult | None] = [None] * n
        self.program_exc: dict | None = None
        self.program_verdict: TestResult | None = None
        self.deadline_from: int | None = None
        self.output = b""
        self.stats: dict = {}
        self.finished = False
        self.tampered = False

    def apply(self, frame: bytes, index: dict[int, int]) -> None:
        kind = frame[:1]
        if kind in (b"V", b"E", b"D"):
            i = index.get(_K.unpack_from(frame, 1)[0])
            if i is None:
                return
            if kind == b"V":
                j = struct.unpack_from(">H", frame, 5)[0]
                try:
                    self.values[i][j] = decode_value(frame[7:])
                except DecodeError as e:
                    self.exc[i] = self.exc[i] or {"type": "UnencodableValue", "msg": str(e)}
            elif kind == b"E":
                self.exc[i] = self.exc[i] or _json(frame[7:])
            else:
                self.done[i] = True
        elif kind in (b"T", b"C"):
            k = _K.unpack_from(frame, 1)[0]
            info = _json(frame[5:])
            status = "timeout" if kind == b"T" else "crashed"
            reason = str(info.get("reason", ""))
            detail = f"exit {info['exit']}" if "exit" in info else ""
            tr = TestResult(status, reason, detail)  # type: ignore[arg-type]
            if k == -1:
                self.program_verdict = tr
            elif k in index:
                self.verdict[index[k]] = tr
                if reason == "program_deadline":
                    self.deadline_from = index[k]
        elif kind == b"P":
            self.program_exc = _json(frame[1:])
        elif kind == b"X":
            self.tampered = True
        elif kind == b"O":
            self.output = frame[1:]
        elif kind == b"Z":
            self.stats = _json(frame[1:])
            self.finished = True


def _json(b: bytes) -> dict:
    try:
        v = json.loads(b)
        return v if isinstance(v, dict) else {}
    except ValueError:
        return {}


def judge(plan: TestPlan, st: JobState, i: int) -> TestResult:
    if plan.mode == "invalid":
        return TestResult("error", "invalid_test", plan.error)
    if st.tampered:  # even tests that passed before: the program forges results
        return TestResult("failed", "tampering", "the program wrote to the sandbox's result channel")
    if st.verdict[i] is not None:
        return st.verdict[i]  # type: ignore[return-value]
    exc = st.exc[i]
    if exc is not None:
        etype, msg = str(exc.get("type", "?")), str(exc.get("msg", ""))[:300]
        if plan.mode == "exec" and etype == "AssertionError":
            return TestResult("failed", "assertion", msg)
        return TestResult("error", etype, msg)
    if st.done[i]:
        if plan.mode == "exec":
            return TestResult("passed")
        vals = st.values[i]
        if len(vals) != len(plan.exprs) or any(j not in vals for j in range(len(plan.exprs))):
            return TestResult("error", "incomplete", "not every value of the test was reported")
        try:
            ok = bool(host_eval(plan.tree, [vals[j] for j in range(len(plan.exprs))]))  # type: ignore[arg-type]
        except (HostEvalError, TypeError, ValueError, ArithmeticError, RecursionError, KeyError,
                AttributeError, IndexError, MemoryError) as e:
            return TestResult("error", type(e).__name__, str(e)[:300])
        if ok:
            return TestResult("passed")
        got = ", ".join(_short_repr(vals[j]) for j in range(len(plan.exprs)))
        return TestResult("failed", "assertion", f"{', '.join(plan.exprs)[:200]} -> {got}")
    if st.program_exc is not None:
        return TestResult("error", "program_error",
                          f"{st.program_exc.get('type', '?')}: {str(st.program_exc.get('msg', ''))[:300]}")
    if st.program_verdict is not None:
        return st.program_verdict
    if st.deadline_from is not None and i > st.deadline_from:
        return TestResult("timeout", "program_deadline")
    return TestResult("error", "not_run", "the sandbox did not report this test")


def skip_after_failure(results: list[TestResult]) -> list[TestResult]:
    """Stop-at-first-failure: every test after the first one that did not pass is skipped (failed), whatever
    the sandbox reported for it. The harness stops at a test that raised, timed out or crashed; a wrong
    value is only known here, so later tests may have run: their verdicts are dropped all the same."""
    out = list(results)
    first = next((i for i, r in enumerate(out) if r.status != "passed"), len(out))
    skipped = TestResult("failed", "skipped", f"not run: test {first} did not pass (stop_at_first_failure)")
    out[first + 1:] = [skipped] * (len(out) - first - 1)
    return out


def _short_repr(v: object, limit: int = 200) -> str:
    try:
        r = repr(v)
    except (ValueError, RecursionError):  # e.g. an int over the str conversion limit
        r = f"<{type(v).__name__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."
