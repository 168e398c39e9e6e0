"""Host side: what the frames of one job say about each test, and the verdict of each test.

The harness relays frames (values, exceptions, inside checks, test ends, timeouts, crashes);
``JobState`` collects them and ``judge`` turns them into one ``TestResult`` per test, deciding
host-compared tests with sandbox/checks.py. Every test starts failed and passes only on positive
evidence. Reading a frame never raises for what a program can put in it (a value that does not
decode is that test's error); a frame the harness itself could not have sent is a ``ProtocolError``,
and the pool restarts the worker.
"""
from __future__ import annotations

import json
import struct

from .codec import decode_raw
from .checks import (DecodeError, HoleRaised, HostEvalError, RaisedValue, TestPlan, decode_value, host_eval,
                     plain_equal)
from .rewrite import SetupPlan
from .types import TestResult

_K = struct.Struct(">i")
_KJ = struct.Struct(">IH")
_NO_EXPR = 0xFFFF


class ProtocolError(Exception):
    """A frame the harness never sends: the worker is broken (or compromised) and is restarted."""


class JobState:
    """What the host has learnt about one job so far, frame by frame."""

    def __init__(self, n: int):
        # each hole's value as the V frame carried it (bytes, decoded when judged) or a RaisedValue
        self.values: list[dict[int, object]] = [{} for _ in range(n)]
        self.exc: list[dict | None] = [None] * n
        self.checks: list[list[tuple[str, object]]] = [[] for _ in range(n)]
        self.done = [False] * n
        self.verdict: list[TestResult | None] = [None] * n
        self.program_exc: dict | None = None
        self.program_verdict: TestResult | None = None
        self.deadline_from: int | None = None
        self.output = b""
        self.stats: dict = {}
        self.finished = False
        self.tampered = False
        # holes whose encoded values are kept for the pool's expected-value cache: (test, hole) -> key
        self.keep: dict[tuple[int, int], bytes] = {}
        self.kept: dict[tuple[int, int], bytes] = {}

    def apply(self, frame: bytes, index: dict[int, int]) -> None:
        kind, n = frame[:1], len(frame)
        if kind in (b"V", b"E", b"K", b"D"):
            if n < 5 or (kind != b"D" and n < 7) or (kind == b"D" and n != 5):
                raise ProtocolError(f"{kind!r} frame of {n} bytes")
            i = index.get(_K.unpack_from(frame, 1)[0])
            if i is None:
                raise ProtocolError(f"{kind!r} frame for a test this job does not have")
            j = _KJ.unpack_from(frame, 1)[1] if kind != b"D" else 0
            if kind == b"V":
                self.values[i].setdefault(j, frame[7:])
                if (i, j) in self.keep:
                    self.kept.setdefault((i, j), frame[7:])
            elif kind == b"E" and j == _NO_EXPR:
                self.exc[i] = self.exc[i] or _json(frame[7:])
            elif kind == b"E":
                self.values[i].setdefault(j, RaisedValue(_json(frame[7:])))
            elif kind == b"K":
                self.checks[i].append(_check(frame[7:]))
            else:
                self.done[i] = True
        elif kind in (b"T", b"C"):
            if n < 5:
                raise ProtocolError(f"{kind!r} frame of {n} bytes")
            k = _K.unpack_from(frame, 1)[0]
            info = _json(frame[5:])
            status = "timeout" if kind == b"T" else "crashed"
            reason = str(info.get("reason", ""))[:40]
            detail = f"exit {str(info['exit'])[:20]}" if "exit" in info else str(info.get("detail", ""))[:200]
            tr = TestResult(status, reason, detail)  # type: ignore[arg-type]
            if k == -1:
                self.program_verdict = tr
            elif k in index:
                self.verdict[index[k]] = tr
                if reason == "program_deadline":
                    self.deadline_from = index[k]
            else:
                raise ProtocolError(f"{kind!r} frame for a test this job does not have")
        elif kind == b"P":
            self.program_exc = _json(frame[1:])
        elif kind == b"L":
            pass
        elif kind == b"X":
            self.tampered = True
        elif kind == b"O":
            self.output = frame[1:]
        elif kind == b"Z":
            self.stats = _json(frame[1:])
            self.finished = True
        else:
            raise ProtocolError(f"unknown frame type {kind!r}")


def decode_hole(payload: bytes) -> object:
    """A hole's value as a V frame carries it; a malformed one is a raised ``UnencodableValue``."""
    try:
        return decode_value(payload)
    except DecodeError as e:
        return RaisedValue({"type": "UnencodableValue", "msg": str(e)})


def _decode_raw(raw: object) -> object:
    try:
        return decode_raw(raw)
    except DecodeError as e:
        return RaisedValue({"type": "UnencodableValue", "msg": str(e)})


def _check(payload: bytes) -> tuple[str, object]:
    """An inside check's frame: (check id, its holes' values), or (id, RaisedValue) if malformed."""
    try:
        raw = json.loads(payload)
        cid, values = raw[0], raw[1]
        if not isinstance(cid, str) or not isinstance(values, list):
            raise DecodeError("malformed check")
        return cid[:20], [_decode_raw(v) for v in values]
    except Exception as e:  # noqa: BLE001 - whatever the text, that check errors
        return "?", RaisedValue({"type": "UnencodableValue", "msg": f"malformed check: {type(e).__name__}"})


def _json(b: bytes) -> dict:
    try:
        v = json.loads(b)
        return v if isinstance(v, dict) else {}
    except (ValueError, RecursionError):
        return {}


def _evaluate(tree, values: list) -> TestResult | None:
    """None when the assertion holds, else its verdict. Host evaluation is bounded and total."""
    try:
        if bool(host_eval(tree, values)):
            return None
    except HoleRaised as e:
        return TestResult("error", e.raised.type, e.raised.msg)
    except (HostEvalError, DecodeError) as e:
        return TestResult("error", type(e).__name__, str(e)[:300])
    except Exception as e:  # noqa: BLE001 - TypeError, ArithmeticError, ...: Python would raise them too
        return TestResult("error", type(e).__name__, _safe_str(e))
    return TestResult("failed", "assertion", ", ".join(_short_repr(v) for v in values)[:300])


def _inside_checks(plan: TestPlan, st: JobState, i: int, setup: SetupPlan) -> TestResult | None:
    """The first rewritten assert that did not hold, in the order they ran (Python stops there)."""
    for cid, values in st.checks[i]:
        trees = setup.checks if cid[:1] == "s" else plan.checks if cid[:1] == "t" else ()
        try:
            tree = trees[int(cid[1:])]
        except (ValueError, IndexError):
            return TestResult("error", "invalid_check", f"unknown check {cid!r}")
        if isinstance(values, RaisedValue):
            return TestResult("error", values.type, values.msg)
        bad = _evaluate(tree, values)  # type: ignore[arg-type]
        if bad is not None:
            return bad
    return None


def judge(plan: TestPlan, st: JobState, i: int, setup: SetupPlan | None = None) -> TestResult:
    if plan.mode == "invalid":
        return TestResult("error", "invalid_test", plan.error)
    if st.tampered:  # even tests that passed before: the program forges results
        return TestResult("failed", "tampering", "the program wrote to the sandbox's result channel")
    if st.verdict[i] is not None:
        return st.verdict[i]  # type: ignore[return-value]
    bad = _inside_checks(plan, st, i, setup or SetupPlan())
    if bad is not None:
        return bad
    exc = st.exc[i]
    if exc is not None:
        etype, msg = str(exc.get("type", "?"))[:100], str(exc.get("msg", ""))[:300]
        if plan.mode == "exec" and etype == "AssertionError":
            return TestResult("failed", "assertion", msg)
        return TestResult("error", etype, msg)
    if st.done[i]:
        if plan.mode == "exec":
            return TestResult("passed")
        vals = st.values[i]
        if any(j not in vals for j in range(len(plan.exprs))):
            return TestResult("error", "incomplete", "not every value of the test was reported")
        if plan.equal_payload is not None and vals[plan.equal_payload[0]] == plan.equal_payload[1]:
            return TestResult("passed")  # the expected literal's own encoding: equal once decoded
        if plan.equal_holes is not None and plain_equal(*(vals[j] for j in plan.equal_holes)):
            return TestResult("passed")  # e.g. f(x) and ref_func(x) sent as the same plain JSON
        values = [decode_hole(v) if type(v) is bytes else v for v in (vals[j] for j in range(len(plan.exprs)))]
        bad = _evaluate(plan.tree, values)
        if bad is None:
            return TestResult("passed")
        if bad.status == "failed":
            return TestResult("failed", "assertion", f"{', '.join(plan.exprs)[:200]} -> {bad.detail}")
        return bad
    if st.program_exc is not None:
        return TestResult("error", "program_error",
                          f"{str(st.program_exc.get('type', '?'))[:100]}: {str(st.program_exc.get('msg', ''))[:300]}")
    if st.program_verdict is not None:
        return st.program_verdict
    if st.deadline_from is not None and i > st.deadline_from:
        return TestResult("timeout", "program_deadline")
    return TestResult("error", "not_run", "the sandbox did not report this test")


def skip_after_failure(results: list[TestResult]) -> list[TestResult]:
    """Stop-at-first-failure: every test after the first one that did not pass is skipped (failed), whatever
    the sandbox reported for it. Verdicts are decided here, on the host (the child evaluates every hole of
    a test, even after one raised), so the pool runs tests in chunks and later tests of a chunk may have
    run: their verdicts are dropped all the same."""
    out = list(results)
    first = next((i for i, r in enumerate(out) if r.status != "passed"), len(out))
    skipped = TestResult("failed", "skipped", f"not run: test {first} did not pass (stop_at_first_failure)")
    out[first + 1:] = [skipped] * (len(out) - first - 1)
    return out


def _safe_str(e: BaseException) -> str:
    try:
        return str(e)[:300]
    except Exception:  # noqa: BLE001 - e.g. an int over the str conversion limit in the message
        return ""


def _short_repr(v: object, limit: int = 200) -> str:
    try:
        r = repr(v)
    except Exception:  # noqa: BLE001 - e.g. an int over the str conversion limit
        r = f"<{type(v).__name__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."
