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


# ----------------------------------------------------------------------------- early stop (stop_at_first_failure)
LITERAL_TESTS = [f"assert f({i}) == {i * i}" for i in range(30)]
PROGRAMS = {
    "right": "def f(x):\n    return x * x\n",
    "wrong_at_7": "def f(x):\n    return -1 if x == 7 else x * x\n",
    "floats": "def f(x):\n    return float(x * x)\n",  # 1.0 is not 1's encoding, but 1.0 == 1 passes
    "floats_then_wrong": "def f(x):\n    return float(x * x) if x < 12 else (0 if x == 20 else x * x)\n",
    "raises_at_3": "def f(x):\n    if x == 3:\n        raise ValueError(x)\n    return x * x\n",
    "bool_at_1": "def f(x):\n    return True if x == 1 else x * x\n",
}


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1, timeout_s=5.0) as p:
        yield p


@pytest.mark.parametrize("name", PROGRAMS)
def test_stopping_early_gives_the_verdicts_of_a_full_run(pool, name):
    from sandbox.verdicts import skip_after_failure

    full = pool.run(Job(name, PROGRAMS[name], LITERAL_TESTS))
    stopped = pool.run(Job(name, PROGRAMS[name], LITERAL_TESTS, stop_at_first_failure=True))
    assert list(stopped.tests) == skip_after_failure(list(full.tests)), (full.to_dict(), stopped.to_dict())


def test_the_harness_stops_after_the_first_value_that_is_not_the_literal(pool):
    prog = ("import time\ndef f(x):\n    time.sleep(0.02)\n    print('call', x, flush=True)\n"
            "    return -1 if x == 2 else x * x\n")
    r = pool.run(Job("slow_wrong", prog, LITERAL_TESTS, stop_at_first_failure=True))
    assert [t.status for t in r.tests[:3]] == ["passed", "passed", "failed"] and r.passed == 2
    # one child ran tests 0, 1, 2 (and maybe a few more before pid 1 read the frames), not all 30
    assert 3 <= r.output.count("call") < 10, r.output
    w = pool.workers[0]
    plans = [plan_test(t) for t in LITERAL_TESTS]
    one = w.run(Job("slow_wrong", prog, LITERAL_TESTS), plans, early_stop=True)  # no skipping: what ran
    assert [t.reason for t in one.tests[:3]] == ["", "", "assertion"]
    assert all(t.reason == "not_run" for t in one.tests[3:]), one.to_dict()


# ----------------------------------------------------------------------------- two holes (ref_func answers)
def verdict2(plan, out, exp):
    st = JobState(1)
    for j, v in enumerate((out, exp)):
        st.apply(b"V" + struct.pack(">IH", 0, j) + encode_value(v, 1 << 20), {0: 0})
    st.apply(b"D" + struct.pack(">I", 0), {0: 0})
    return judge(plan, st, 0).status


def test_two_equal_plain_payloads_decide_as_the_full_path():
    plans = [plan_test("assert _evalplus_check(f(x), ref_func(x), 0)"), plan_test("assert f(x) == ref_func(x)"),
             plan_test("assert _evalplus_check(f(x), ref_func(x), 1e-06)")]
    assert all(p.equal_holes == (0, 1) for p in plans)
    for plan in plans:
        full = dataclasses.replace(plan, equal_holes=None)
        for a in VALUES:
            for b in (a, [1, 2.5], 1.0, "text"):
                assert verdict2(plan, a, b) == verdict2(full, a, b), (a, b)
    assert plan_test("assert f(x) != ref_func(x)").equal_holes is None
    assert plan_test("assert _evalplus_check(f(x), ref_func(x), g(1))").equal_holes is None


def test_floats_travel_as_json_numbers_and_come_back_exactly():
    from sandbox.codec import decode_value

    values = [[1, 3, 2.0, 8.0, 1e16, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2], [math.inf, -math.inf]]
    for v in values:
        back = decode_value(encode_value(v, 1 << 20))
        assert [(type(x), x.hex() if type(x) is float else x) for x in back] == \
               [(type(x), x.hex() if type(x) is float else x) for x in v]
    assert math.isnan(decode_value(encode_value(math.nan, 100)))
    assert encode_value([1.0, 1], 100) == b"[1.0,1]"  # 1.0 stays a float, 1 an int
