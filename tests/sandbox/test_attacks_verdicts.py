"""Attacks on where verdicts are decided, and on the host's decoding (real sandbox, real programs).

Each attack returns a wrong answer and tries to get it passed: through a tolerance helper, an
all()/any(), an expected value computed after it ran, the harness's own functions, a check()
function or a multi-statement test. Then the host's side: values that used to crash or freeze the
decoder. Last, correct programs in the shapes a stricter sandbox could wrongly fail.
"""
import struct
import textwrap
import time

import pytest

from data_prep import benchmarks as B
from sandbox import Job
from sandbox.verdicts import JobState, ProtocolError

from .conftest import slot_uid_processes

GOOD = "def add(a, b):\n    return a + b\n"
GOOD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]
ALWAYS_EQUAL = """
class Any:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __len__(self): return 2
    def __iter__(self): return iter([self, self])
    def __abs__(self): return 0
    def __sub__(self, other): return self
    def __lt__(self, other): return True
    def __le__(self, other): return True
    __hash__ = object.__hash__
"""


def ded(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


def none_passed(r):
    return r.passed == 0


# (name, program, tests, setup, check(result))
ATTACKS = [
    # 1. comparisons that used to run inside the program's process
    ("evalplus_check_always_equal", ALWAYS_EQUAL + "def f(x): return Any()\n",
     ["assert _evalplus_check(f(1), [1.5, 2.0], 1e-06)", "assert _evalplus_check(f(2), 2.5, 0)"],
     B._EVALPLUS_CHECK_SRC, none_passed),
    ("evalplus_check_patched_builtins", ded("""
        import builtins
        builtins.isinstance = lambda *a: True
        builtins.abs = lambda x: 0
        builtins.all = lambda x: True
        builtins.type = lambda x: float
        def f(x): return [9.0, 9.0]
        """), ["assert _evalplus_check(f(1), [1.5, 2.0], 1e-06)"], B._EVALPLUS_CHECK_SRC, none_passed),
    ("evalplus_check_replaced_code", ded("""
        import sys
        def f(x):
            g = sys._getframe(1).f_globals
            if "_evalplus_check" in g:
                g["_evalplus_check"].__code__ = (lambda *a, **k: True).__code__
            return 0.0
        """), ["assert _evalplus_check(f(1), 1.5, 0)", "assert _evalplus_check(f(1), 1.5, 0)"],
     B._EVALPLUS_CHECK_SRC, none_passed),
    ("evalplus_found_always_true", ALWAYS_EQUAL + "def f(x): return Any()\n",
     ["assert _evalplus_found(f('a')) == False"], B._EVALPLUS_FOUND_SRC,
     none_passed),  # decided by type and identity: no method of the program's object runs
    ("all_over_generator_always_equal", ALWAYS_EQUAL + "def f(): return [Any(), Any(), Any()]\n",
     ["assert all(a == b for a, b in zip(f(), [1, 2, 3]))", "assert all([x == 7 for x in f()])",
      "assert any(x == 5 for x in f())"], "", none_passed),
    ("all_with_patched_all", "import builtins\nbuiltins.all = builtins.any = lambda x: True\ndef f(): return [0, 0]\n",
     ["assert all(x == 1 for x in f())", "assert any(x == 1 for x in f())"], "", none_passed),
    ("np_allclose_always_equal", ALWAYS_EQUAL + "def f(): return Any()\n",
     ["import numpy as np\nassert np.allclose(f(), [1.0, 2.0])"], "", none_passed),
    # 2. expected values computed after the program ran
    ("patched_math_sqrt", "import math\nmath.sqrt = lambda x: 7.0\ndef f(x): return 7.0\n",
     ["import math\nassert f(25) == math.sqrt(25)"], "", none_passed),
    ("patched_module_in_sys_modules", ded("""
        import sys, collections
        collections.Counter = lambda *a, **k: 3
        sys.modules["string"] = type(sys)("string"); sys.modules["string"].ascii_lowercase = "zz"
        def f(): return 3
        def g(): return "zz"
        """), ["from collections import Counter\nassert f() == Counter('aab')",
               "import string\nassert g() == string.ascii_lowercase"], "", none_passed),
    ("reference_function_rebound_during_the_call", ded("""
        import sys
        def f(x):
            sys._getframe(1).f_globals["ref_func"] = lambda x: 0
            return 0
        """), ["assert _evalplus_check(f(3), ref_func(3), 0)", "assert f(3) == ref_func(3)"],
     "def ref_func(x):\n    return x * 2\n", none_passed),
    ("pristine_builtins_patched_through_gc", ded("""
        import gc, builtins
        def f():
            for o in gc.get_objects():
                if type(o) is dict and "reversed" in o and o is not builtins.__dict__:
                    o["reversed"] = lambda x: [9]
            return [9]
        """), ["assert f() == list(reversed([1, 2]))"], "", none_passed),
    # 3. the harness's own functions rebound
    ("rebind_builtins_eval_exec", "import builtins\nbuiltins.eval = lambda *a, **k: 3\n"
     "builtins.exec = lambda *a, **k: None\ndef add(a, b): return 7\n", GOOD_TESTS, "", none_passed),
    ("rewrite_frames_through_os_write", ded("""
        import os
        _w = os.write
        def w(fd, data):
            frame = b"V\\x00\\x00\\x00\\x00\\x00\\x00"
            return _w(fd, data.replace(frame + b"0", frame + b"3"))
        os.write = w
        def add(a, b): return 0
        """), GOOD_TESTS[:1], "", none_passed),
    # 4. HumanEval's check(candidate): asserts inside a function
    ("check_function_always_equal", ALWAYS_EQUAL + "def f(x): return Any()\n", ["check(f)"],
     "def check(candidate):\n    for i in range(3):\n        assert candidate(i) == i * 2\n"
     "    assert candidate(5) == 10\n", none_passed),
    ("check_function_expected_from_frames", ded("""
        import sys
        def f(x):
            consts = sys._getframe(1).f_code.co_consts  # the check function's own constants
            return max([c for c in consts if type(c) is int], default=0)
        """), ["check(f)"], "def check(candidate):\n    assert candidate(5) == 424242\n", none_passed),
    # 5. multi-statement tests
    ("exec_test_expected_from_bytecode", ded("""
        import sys
        def f(x):
            consts = sys._getframe(1).f_code.co_consts
            return max([c for c in consts if type(c) is int], default=0)
        """), ["x = f(1)\nassert x == 424242", "for i in range(2):\n    assert f(i) == 99999 + i"], "", none_passed),
    ("exec_test_drops_queued_frames", ded("""
        import gc
        def f(x):
            for o in gc.get_objects():
                if type(o) is list and o and type(o[0]) is bytes:
                    o.clear()
            return -1
        """), ["assert f(1) == 2\nassert f(2) == 4", "y = f(1)\nassert y == 1\nz = f(2)"], "", none_passed),
]


@pytest.mark.parametrize("name,program,tests,setup,check", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_verdict_attack_fails(pool, name, program, tests, setup, check):
    r = pool.run(Job(name, program, tests, setup=setup))
    assert len(r.tests) == len(tests)
    assert check(r), r.to_dict()
    assert not slot_uid_processes(pool), "processes left behind"
    for _ in range(len(pool.workers)):
        assert pool.run(Job("control", GOOD, GOOD_TESTS)).all_passed


# ----------------------------------------------------------------------------- the host survives
FAKE_MODULE = """
import sys
m = type(sys)("{mod}")
class {cls}:
    numerator, denominator = 1, 0
    def __str__(self): return {text!r}
m.{cls} = {cls}
sys.modules["{mod}"] = m
def f(): return {cls}()
"""
HOST_ATTACKS = [
    ("fraction_zero_denominator", FAKE_MODULE.format(mod="fractions", cls="Fraction", text=""),
     ["assert f() == 1"]),
    ("decimal_not_a_number_text", FAKE_MODULE.format(mod="decimal", cls="Decimal", text="12abc"),
     ["assert f() == 1"]),
    ("decimal_huge_exponent", FAKE_MODULE.format(mod="decimal", cls="Decimal", text="1e3000000"),
     ["assert int(f()) == 5", "assert round(f()) == 5", "assert f() + 1 > 0"]),
    ("hash_colliding_list_to_set", "def f():\n    return [i * (2 ** 61 - 1) for i in range(1, 30000)]\n",
     ["assert set(f()) == {1}", "assert frozenset(f()) == frozenset()", "assert 1 in set(f())"]),
    ("hash_colliding_set_value", "def f():\n    return {i * (2 ** 61 - 1) for i in range(1, 3000)}\n",
     ["assert f() == {1}"]),
    ("huge_round_digits", "def f(): return -10 ** 9\n", ["assert round(5, f()) == 0"]),
]


@pytest.mark.parametrize("name,program,tests", HOST_ATTACKS, ids=[a[0] for a in HOST_ATTACKS])
def test_hostile_values_error_quickly_and_leave_the_worker_in_step(pool, name, program, tests):
    t0 = time.monotonic()
    r = pool.run(Job(name, program, tests))
    assert time.monotonic() - t0 < 10, "host-side work must stay bounded"
    assert r.passed == 0 and all(t.status == "error" for t in r.tests), r.to_dict()
    for _ in range(len(pool.workers)):  # the next program gets its own verdicts, not these
        ok = pool.run(Job("control", GOOD, GOOD_TESTS[:2] + ["assert add(2, 2) == 5"]))
        assert [t.status for t in ok.tests] == ["passed", "passed", "failed"], ok.to_dict()


def test_frames_are_length_checked_and_tagged_on_the_host(pool):
    st = JobState(1)
    for bad in (b"V\0\0\0\0\0", b"D\0\0\0", b"D\0\0\0\0\0", b"Q", b"T\0"):
        with pytest.raises(ProtocolError):
            st.apply(bad, {0: 0})
    with pytest.raises(ProtocolError):  # a frame for a test the job does not have
        st.apply(b"D" + struct.pack(">I", 7), {0: 0})
    st.apply(b"V" + struct.pack(">IH", 0, 0) + b'{"fr":["0x1","0x0"]}', {0: 0})  # decodes to an error value
    st.apply(b"D" + struct.pack(">I", 0), {0: 0})
    from sandbox.checks import plan_test
    from sandbox.verdicts import judge

    verdict = judge(plan_test("assert f() == 1"), st, 0)
    assert (verdict.status, verdict.reason) == ("error", "UnencodableValue"), verdict
    # bytes of an earlier job left in a worker's buffer: the worker restarts, the job is right
    w = pool.workers[0]
    restarts = w.restarts
    w._buf += struct.pack(">I", 10) + struct.pack(">I", 12345) + b"D" + struct.pack(">I", 0) + b"\0"
    r = w.run(Job("after", GOOD, GOOD_TESTS), [__import__("sandbox.checks").checks.plan_test(t) for t in GOOD_TESTS])
    assert r.all_passed and w.restarts == restarts + 1


# ----------------------------------------------------------------------------- not over-strict
CORRECT = [
    ("dict_views", "def f(): return {2: 20, 1: 10}\n",
     ["assert sorted(f().items()) == [(1, 10), (2, 20)]", "assert sum(f().values()) == 30",
      "assert f().keys() == {1, 2}", "assert sorted(f().keys()) == [1, 2]", "assert list(f().values()) == [20, 10]"]),
    ("short_circuit_or", "def f(x): return None if x == 0 else [x - 1]\n",
     ["assert f(0) is None or f(0)[0] == 0", "assert f(1) is None or f(1)[0] == 0",
      "assert not (f(0) is not None and f(0)[0] == 5)"]),
    ("short_circuit_any", "def f(): return [3]\n", ["assert any(f()[i] == 3 for i in range(10))"]),
    ("isinstance_program_class", "class Node:\n    pass\ndef f(): return Node()\n",
     ["assert isinstance(f(), Node)", "assert isinstance(f(), (Node, int))"]),
    ("len_over_the_value_cap", "def f(n): return 'x' * n\ndef g(n): return list(range(n))\n",
     ["assert len(f(2 << 20)) == 2 << 20", "assert len(g(10 ** 6)) == 10 ** 6", "assert len(f(3)) > 2"]),
    ("program_defines_a_builtin_name", "def sum(a, b): return a + b\ndef sorted(x, y): return [y]\n",
     ["assert sum(10, 15) == 25", "assert sorted(1, 2) == [2]"]),
    ("clean_holes_from_setup_and_imports", "import math\ndef f(x): return math.sqrt(x)\n",
     ["import math\nassert f(25) == math.sqrt(25)", "assert f(4) == ref(4)",
      "from collections import Counter\nassert Counter('aab') == Counter('aba')"],),
    ("all_any_over_comprehensions", "def f(n): return [i * i for i in range(n)]\n",
     ["assert all(abs(x - i * i) < 1e-9 for i, x in enumerate(f(5)))", "assert not any(x < 0 for x in f(4))",
      "assert all([isinstance(x, int) for x in f(3)])"]),
    ("exec_tests_and_check_functions", "def f(x): return 2 * x\n",
     ["x = f(1)\nassert x == 2", "for i in range(3):\n    assert f(i) == 2 * i",
      "try:\n    assert f(1) == 99\nexcept AssertionError:\n    pass", "check(f)"]),
    ("evalplus_oracles", "def f(x): return x + 1e-9\ndef g(x): return 'a' if x else None\n",
     ["assert _evalplus_check(f(1.5), 1.5, 0)", "assert _evalplus_found(g(1)) == True",
      "assert not _evalplus_check(f(1.5), 1.6, 0)", "import numpy as np\nassert np.allclose([f(1.0)], [1.0])"]),
]
SETUP = ("def ref(x):\n    import math\n    return math.sqrt(x)\n\n"
         "def check(candidate):\n    str = 'local, not the builtin'\n    assert candidate(len(str)) == 2 * len(str)\n"
         "    for i in range(3):\n        assert candidate(i) == i * 2\n\n"
         + B._EVALPLUS_CHECK_SRC + B._EVALPLUS_FOUND_SRC)


@pytest.mark.parametrize("name,program,tests", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_programs_keep_passing(pool, name, program, tests):
    r = pool.run(Job(name, program, tests, setup=SETUP))
    assert r.all_passed, r.to_dict()
    wrong = pool.run(Job(name, "def f(*a): return -1\ndef g(*a): return -1\n", tests, setup=SETUP))
    assert not wrong.all_passed  # the same tests can fail


# ----------------------------------------------------------------------------- host side, no sandbox
@pytest.mark.parametrize("payload", [
    b'{"fr": ["0x1", "0x0"]}', b'{"dec": "1e3000000"}', b'{"dec": "12abc"}', b'{"dec": " 1"}',
    b'{"s": [' + b",".join(b'{"i": "%s"}' % hex(i * (2 ** 61 - 1)).encode() for i in range(1, 200)) + b"]}",
    b'{"c": [1, 2]}', b'{"f": 3}', b'{"r": ["0", 1, 1]}', b'{"d": [[1]]}', b'{"x": 5}', b'{"dk": 5}',
])
def test_decoding_is_total_and_bounded(payload):
    from sandbox.codec import DecodeError, decode_value
    t0 = time.monotonic()
    with pytest.raises(DecodeError):
        decode_value(payload)
    assert time.monotonic() - t0 < 1


def test_host_arithmetic_on_program_values_is_bounded():
    import fractions

    from sandbox.checks import HostEvalError, host_eval, plan_test
    for test, value in [("assert f() ** 10000000 == 1", fractions.Fraction(3, 2)),
                        ("assert sum(f()) == 1", [fractions.Fraction(1, p) for p in range(2, 40000)]),
                        ("assert round(1.5, f()) == 2", 10 ** 9)]:
        t0 = time.monotonic()
        with pytest.raises(HostEvalError):
            host_eval(plan_test(test).tree, [value])
        assert time.monotonic() - t0 < 2, test


def test_dict_views_round_trip_with_python_semantics():
    from sandbox.checks import decode_value
    from sandbox.harness import encode_value
    d = {1: "a", 2: "b"}
    keys, values, items = (decode_value(encode_value(v, 1000)) for v in (d.keys(), d.values(), d.items()))
    assert keys == {1, 2} and items == {(1, "a"), (2, "b")} and sorted(values) == ["a", "b"]
    assert values != ["a", "b"]  # a values view equals nothing but itself, as in Python


def test_clean_child_failures_are_contained(pool):
    # a setup that needs the program cannot run alone: the program's child evaluates every hole
    r = pool.run(Job("setup_needs_program", "def f(x): return x + 1\n", ["assert f(1) == X", "assert f(2) == X + 1"],
                     setup="X = f(1)\n"))
    assert r.all_passed, r.to_dict()
    # an expected value that hangs or dies: that test errors, the others are judged as usual
    setup = "def slow(x):\n    while True:\n        pass\n\ndef boom(x):\n    import os\n    os._exit(3)\n"
    r = pool.run(Job("expected_side_fails", GOOD, ["assert add(1, 2) == slow(3)", "assert add(1, 2) == boom(3)",
                                                 "assert add(2, 2) == 4"], setup=setup))
    assert [(t.status, t.reason) for t in r.tests] == [
        ("error", "expected_value_timeout"), ("error", "expected_value_crashed"), ("passed", "")], r.to_dict()


def test_an_assert_helper_called_by_the_setup_itself_is_reported(pool):
    setup = "def helper(x):\n    assert x == 1\n\nhelper(1)\n"
    r = pool.run(Job("setup_calls_helper", GOOD, GOOD_TESTS[:1], setup=setup))
    assert r.tests[0].status == "error" and "outside a test" in r.tests[0].detail, r.to_dict()


def test_which_holes_are_clean_and_which_asserts_are_rewritten():
    from sandbox.checks import plan_test
    from sandbox.rewrite import ProgramNames, clean_holes, plan_setup

    def clean(test, setup="", program="def f(x): return x\n"):
        plan = plan_test(test)
        return [plan.exprs[j] for j in clean_holes(plan, plan_setup(setup), ProgramNames(program))]

    assert clean("import math\nassert f(25) == math.sqrt(25)") == ["math.sqrt(25)"]
    assert clean("assert f(25) == math.sqrt(25)", program="import math\ndef f(x): return x\n") == []
    assert clean("assert f(3) == ref(3)", setup="def ref(x): return x\n") == ["ref(3)"]
    assert clean("assert f(3) == ref(3)", setup="from helpers import *\n") == []
    assert clean("assert f(1) == list(reversed([1, 2]))") == ["reversed([1, 2])"]
    assert clean("assert f(1) == list(reversed([1, 2]))", program="def reversed(x): return x\n") == []
    assert clean("assert sum(10, 15) == 25", program="def sum(a, b): return a + b\n") == []
    kept = ["try:\n    assert f(1) == 2\nexcept AssertionError:\n    pass",
            "class T:\n    assert f(1) == 2", "assert (n := f(1)) == 2\nx = n"]
    assert all("sandbox-check" not in plan_test(t).src for t in kept)
    assert "sandbox-check" in plan_test("x = f(1)\nassert x == 2").src
    assert "424242" not in plan_setup("def check(c):\n    assert c(1) == 424242\n").src  # expected stays here
