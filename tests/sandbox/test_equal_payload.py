"""The host's shortcut for `assert HOLE == LITERAL` (sandbox/checks.py ``equal_payload``): a value sent as
exactly the literal's encoding passes undecoded. It must decide every test as the full path does."""
import dataclasses
import math
import struct
from collections import Counter, OrderedDict, deque

import pytest

from sandbox import Job, SandboxPool
from sandbox.checks import plan_test
from sandbox.harness import encode_value
from sandbox.verdicts import JobState, judge

LITERALS = ["1", "True", "1.0", "-0.0", "0.0", "[1, 2.5, 'a']", "(1, (2, 3))", "[1, [2, [3]]]", "{1, 2}",
            "{'a', 'b', 'c'}", "{'k': [1, 2]}", "{1: 'x', 2: 'y'}", "b'ab'", "'text'", "None", "1e400",
            "1180591620717411303424", "12345678901234567890123", "(1+2j)", "[]", "()", "{}"]
VALUES = [1, True, 1.0, -0.0, 0.0, [1, 2.5, "a"], (1, (2, 3)), [1, [2, [3]]], {1, 2}, {"a", "b", "c"},
          {"k": [1, 2]}, {1: "x", 2: "y"}, OrderedDict([(1, "x"), (2, "y")]), b"ab", bytearray(b"ab"), "text",
          None, math.inf, 2 ** 70, 12345678901234567890123, 1 + 2j, [], (), {}, frozenset({1}), set(), [1, 2.5],
          (1, [2, 3]), [1, (2, 3)], math.nan, [math.nan], deque([1, 2]), Counter({1: 2}), range(3), iter([1, 2]),
          {1: 2}.values(), {1: 2}.keys(), False, 0, 2.0, [True, 2.5, "a"]]


def verdict(plan, value):
    st = JobState(1)
    st.apply(b"V" + struct.pack(">IH", 0, 0) + encode_value(value, 1 << 20), {0: 0})
    st.apply(b"D" + struct.pack(">I", 0), {0: 0})
    return judge(plan, st, 0).status


@pytest.mark.parametrize("lit", LITERALS)
def test_the_shortcut_decides_as_the_full_path(lit):
    for src in (f"assert f() == {lit}", f"assert {lit} == f()", f"assert _evalplus_check(f(), {lit}, 0)",
                f"assert _evalplus_check(f(), {lit}, 1e-06)"):
        plan = plan_test(src)
        assert plan.equal_payload is not None, src
        full = dataclasses.replace(plan, equal_payload=None)
        for v in VALUES:
            assert verdict(plan, v) == verdict(full, v), (src, v)


def test_shapes_without_the_shortcut():
    for src in ("assert f() == math.nan", "assert f() == float('nan')", "assert f(1) == g(2)", "assert f() != 1",
                "assert f() == [x for x in range(3)]", "assert _evalplus_check(f(), [1.5], 0, as_sets=True)",
                "assert f() == 1 == g()", "assert f() is None", "assert len(f()) == 3 and f()[0] == 1",
                "assert f() == [1] * 3", "x = f()\nassert x == 1"):
        assert plan_test(src).equal_payload is None, src
    assert plan_test("assert len(f()) == 3").equal_payload is not None  # the hole sends the length


def test_no_shortcut_for_a_literal_over_the_host_decoders_bounds():
    big = "0x" + "f" * (1 << 22)  # 16.8 million bits: the host refuses to decode a value this large
    assert plan_test(f"assert f() == {big}").equal_payload is None


def test_in_the_sandbox():
    prog = ("import math\ndef f(x):\n    return {0: [1, 2.5, 'a'], 1: True, 2: 1.0, 3: math.nan, 4: (1, 2),"
            " 5: [1, 2]}[x]\n")
    tests = ["assert f(0) == [1, 2.5, 'a']", "assert f(1) == 1", "assert f(2) == 1", "assert f(3) == float('nan')",
             "assert f(4) == [1, 2]", "assert f(5) == [1, 2]", "assert _evalplus_check(f(2), 1.0000001, 1e-06)",
             "assert f(0) == [1, 2.5, 'b']"]
    with SandboxPool(workers=1, timeout_s=5.0) as p:
        r = p.run(Job("eq", prog, tests))
    assert [t.status for t in r.tests] == ["passed", "passed", "passed", "failed", "failed", "passed", "passed",
                                           "failed"], r.to_dict()
