"""Values over the value cap: an equality between two such values made of exact numbers (no NaN),
strings, bytes, booleans, None and containers is decided by digest (MBPP+ 255's correct answer is 1.66 million
77-tuples, about 1 GB encoded); every other use of them stays ValueTooLarge, and no program can make a
wrong value's digest match."""
import textwrap

import pytest

from sandbox import Job, SandboxPool
from sandbox.codec import DecodeError, DigestValue, HoleRaised, decode_value

CAP = 2000
# The expected side is a clean hole (evaluated in a child that never ran the program), like ref_func(x)
SETUP = "def ref(n):\n    return [(str(i), i, None, b'x') for i in range(n)]\n"
TESTS = ("assert f(2000) == ref(2000)", "assert f(3) == ref(3)", "assert len(f(2000)) == 2000")
RIGHT = "def f(n):\n    return [(str(i), i, None, b'x') for i in range(n)]\n"


def ded(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


@pytest.fixture(scope="module")
def small_cap_pool():
    with SandboxPool(workers=1, value_limit_bytes=CAP) as p:
        yield p


def verdicts(pool, program, tests=TESTS, setup=SETUP, reuse=False):
    r = pool.run_many([Job("j", program, tuple(tests), setup=setup, reuse_expected=reuse)])[0]
    return [(t.status, t.reason) for t in r.tests]


@pytest.mark.parametrize("reuse", [False, True])
def test_a_correct_answer_over_the_cap_passes(small_cap_pool, reuse):
    assert verdicts(small_cap_pool, RIGHT, reuse=reuse) == [("passed", "")] * 3
    # the same answer built another way (a generator, other objects) has the same digest
    other = "def f(n):\n    return list((str(k), k, None, bytes([120])) for k in range(n))\n"
    assert verdicts(small_cap_pool, other, reuse=reuse) == [("passed", "")] * 3


WRONG = {
    "last_item": ded("""
        def f(n):
            r = [(str(i), i, None, b'x') for i in range(n)]
            r[-1] = ('0', 0, None, b'x')
            return r
        """),
    "list_for_tuple": "def f(n):\n    return [[str(i), i, None, b'x'] for i in range(n)]\n",
    "tuple_for_list": "def f(n):\n    return tuple((str(i), i, None, b'x') for i in range(n))\n",
    "bool_for_none": "def f(n):\n    return [(str(i), i, False, b'x') for i in range(n)]\n",
    "bytearray_for_bytes": "def f(n):\n    return [(str(i), i, None, bytearray(b'x')) for i in range(n)]\n",
    "str_subclass": ded("""
        class S(str):
            def __eq__(self, o):
                return True
            __hash__ = str.__hash__
        def f(n):
            return [(S(i), i, None, b'x') for i in range(n)]
        """),
    "patched_marshal_and_hashlib": ded("""
        import marshal, hashlib, builtins
        marshal.dumps = lambda *a, **k: b''
        hashlib.sha256 = lambda *a: hashlib.md5()
        builtins.set = lambda *a: set()
        builtins.map = lambda *a: iter(())
        def f(n):
            return [('nope', i) for i in range(n)]
        """),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_wrong_answer_over_the_cap_never_passes(small_cap_pool, name):
    got = verdicts(small_cap_pool, WRONG[name])
    assert got[0][0] == "error" and got[0][1] in ("ValueTooLarge", "UnencodableValue"), got
    assert got[2] == ("passed", "")  # len() of a result over the cap is still measured


def test_buffer_objects_are_not_digested_as_bytes(small_cap_pool):
    # marshal writes any buffer as bytes; array('B', x) != x in Python, so it must not pass as bytes
    setup = "def ref(n):\n    return b'ab' * n\n"
    tests = ("assert f(3000) == ref(3000)",)
    assert verdicts(small_cap_pool, "def f(n):\n    return b'ab' * n\n", tests, setup) == [("passed", "")]
    arr = "import array\ndef f(n):\n    return [array.array('B', b'ab' * n)][0]\n"
    assert verdicts(small_cap_pool, arr, tests, setup)[0][0] == "error"
    nested = "import array\ndef f(n):\n    return [array.array('B', b'ab')] * n\n"
    setup2 = "def ref(n):\n    return [b'ab'] * n\n"
    assert verdicts(small_cap_pool, nested, tests, setup2)[0][0] == "error"


def test_floats_over_the_cap_are_digested_unless_nan(small_cap_pool):
    # MBPP+ 255's input 103: 82,160 tuples of 77 floats (126 MB encoded)
    setup = "def ref(n, x):\n    return [(x, 0.5, 1j)] * n\n"
    prog = "def f(n, x):\n    return [(x, 0.5, 1j) for _ in range(n)]\n"
    tests = ("assert f(3000, 0.25) == ref(3000, 0.25)", "assert f(3000, -0.0) == ref(3000, -0.0)",
             "assert f(3000, float('nan')) == ref(3000, float('nan'))",
             "assert f(3000, complex('nan')) == ref(3000, complex('nan'))",
             "assert f(3000, 0.25) == ref(3000, 0.25 + 1e-16)")
    got = verdicts(small_cap_pool, prog, tests, setup)
    assert got[:2] == [("passed", "")] * 2, got
    # nan != nan: equal encodings would not mean equal values; a differing float is no digest match
    assert got[2:] == [("error", "ValueTooLarge")] * 3, got


def test_digest_against_a_literal_or_in_other_expressions_is_too_large(small_cap_pool):
    tests = ("assert f(2000) == " + repr([(str(i), i, None, b'x') for i in range(2000)]),
             "assert f(2000) != ref(2000)", "assert sorted(f(2000)) == sorted(ref(2000))")
    got = verdicts(small_cap_pool, RIGHT, tests)
    assert got[0] == ("error", "ValueTooLarge")
    assert got[1] == ("failed", "assertion")  # equal digests: != is False, as in Python
    assert got[2][0] == "error"


def test_digest_decoding_is_strict():
    a, b = decode_value(b'{"h":"' + b"0" * 64 + b'"}'), decode_value(b'{"h":"' + b"0" * 64 + b'"}')
    assert isinstance(a, DigestValue) and a == b and not (a != b)
    with pytest.raises(HoleRaised):
        _ = a == decode_value(b'{"h":"' + b"1" * 64 + b'"}')
    with pytest.raises(HoleRaised):
        _ = [1] == a
    with pytest.raises(HoleRaised):
        len(a)
    for bad in (b'{"h":"abc"}', b'{"h":1}', b'{"h":"' + b"G" * 64 + b'"}', b'{"h":["' + b"0" * 64 + b'"]}'):
        with pytest.raises(DecodeError):
            decode_value(bad)


@pytest.mark.parametrize("program", [
    "def f(n):\n    a = [1]\n    for _ in range(80):\n        a = [a, a]\n    return a\n",  # 2**80 items reached
    "def f(n):\n    a = []\n    a.append(a)\n    return [a] * n\n",  # a cycle
])
def test_shared_or_cyclic_structures_are_refused_quickly(small_cap_pool, program):
    setup = "def ref(n):\n    return [[1]] * n\n"
    (status, reason), = verdicts(small_cap_pool, program, ("assert f(3000) == ref(3000)",), setup)
    assert status == "error" and reason in ("ValueTooLarge", "UnencodableValue"), reason  # not a timeout
