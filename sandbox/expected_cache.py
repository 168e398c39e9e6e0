"""Host side: expected values computed once per pool, for the jobs that ask (``Job.reuse_expected``).

A "clean" hole (``ref_func(x)``, ``math.sqrt(25)``: see sandbox/checks.py) is evaluated in a child that
runs the test's setup but never the program, so its value depends on the setup, the test's prelude and
the expression alone. EvalPlus computes such expected outputs once per task; a pool that recomputed
them for every candidate spent twice EvalPlus' CPU on tasks like HumanEval+ 139, whose reference
function is as slow as the answer. Values are kept as the encoded bytes the clean child sent, and
decoded afresh for every job (decoding is total and bounded: sandbox/codec.py), so no two jobs share an
object. Only values are kept: a hole that raised or ran out of its budget is evaluated again. The cache
is bounded in bytes (least recently used entries go first) and shared by the pool's workers.

A setup whose values change between runs (random numbers, the clock) gets its first run's values for
every later job; that is why this is opt-in, and what EvalPlus' precomputed ground truth does too.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

from .checks import TestPlan

DEFAULT_MAX_BYTES = 256 << 20


def hole_key(setup_src: str, plan: TestPlan, j: int) -> bytes:
    """What a clean hole's value depends on: the setup, the test's prelude, the expression and how its
    value is reduced before it is sent (truth value, size, match found)."""
    what = [setup_src, plan.prelude, plan.exprs[j], j in plan.truth, j in plan.size, j in plan.found]
    return hashlib.sha256(json.dumps(what).encode()).digest()


class ExpectedValueCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            payload = self._entries.get(key)
            if payload is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return payload

    def put(self, key: bytes, payload: bytes) -> None:
        if len(payload) > self.max_bytes // 4:
            return  # one value may not push out everything else
        with self._lock:
            old = self._entries.pop(key, None)
            self._bytes += len(payload) - (len(old) if old is not None else 0)
            self._entries[key] = payload
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)
