"""Expected values computed once per pool (Job.reuse_expected), with the real sandbox: a reference
function's values are reused by later jobs of the same setup and test, still compared on the host,
never reused across setups, never cached when they raised, and only for jobs that ask."""
import pytest

from sandbox import Job, SandboxPool
from sandbox.expected_cache import ExpectedValueCache

BURN = ("def _burn(s):\n    import time\n    t = time.process_time()\n    while time.process_time() - t < s:\n"
        "        pass\n")
SETUP = BURN + "def ref_func(x):\n    _burn(0.3)\n    if x < 0:\n        raise ValueError(x)\n    return [x + 1]\n"
TESTS = tuple(f"assert f({i}) == ref_func({i})" for i in range(3))
RIGHT, WRONG = "def f(x):\n    return [x + 1]\n", "def f(x):\n    return [x + 2]\n"


@pytest.fixture()
def pool():
    with SandboxPool(workers=1, timeout_s=5.0, memory_mb=1024) as p:
        yield p


def run(pool, program, setup=SETUP, tests=TESTS, reuse=True, rid="j"):
    [r] = pool.run_many([Job(rid, program, tests, setup=setup, reuse_expected=reuse)])
    return r


def test_values_are_computed_once_and_still_compared(pool):
    first = run(pool, RIGHT)
    assert first.all_passed and first.expected_cpu_s >= 0.8  # three calls of 0.3 s, outside the program
    again, wrong = run(pool, RIGHT), run(pool, WRONG)
    assert again.all_passed and again.expected_cpu_s == 0.0  # no child computed them this time
    assert wrong.passed == 0 and wrong.expected_cpu_s == 0.0
    assert [t.reason for t in wrong.tests] == ["assertion"] * 3
    assert len(pool.expected) == 3 and pool.expected.hits == 6


def test_only_jobs_that_ask_and_only_the_same_setup(pool):
    run(pool, RIGHT)
    assert run(pool, RIGHT, reuse=False).expected_cpu_s >= 0.8
    other = SETUP.replace("return [x + 1]", "return [x + 2]")
    r = run(pool, WRONG, setup=other)  # another setup: its own values, so this program is right there
    assert r.all_passed and r.expected_cpu_s >= 0.8


def test_a_value_that_raised_is_computed_again(pool):
    tests = ("assert f(-1) == ref_func(-1)",)
    for _ in range(2):
        r = run(pool, RIGHT, tests=tests)
        assert not r.all_passed and r.expected_cpu_s >= 0.25
    assert len(pool.expected) == 0


def test_values_the_program_could_reach_are_never_kept(pool):
    # The setup needs a name only the program defines, so it fails in the clean child and the program's
    # child computes ref_func(x) after the program: a value under the program's control.
    setup = "def ref_func(x):\n    return [x + base()]\n_check = base\n"
    sets_100 = "def base():\n    return 100\n\ndef f(x):\n    return [x + 100]\n"
    sets_0 = "def base():\n    return 0\n\ndef f(x):\n    return [x + 100]\n"
    assert run(pool, sets_100, setup=setup).all_passed
    assert len(pool.expected) == 0
    assert run(pool, sets_0, setup=setup).passed == 0  # its own setup's values, not the first program's


def test_the_cache_is_bounded_in_bytes():
    c = ExpectedValueCache(max_bytes=100)
    for k in range(5):
        c.put(bytes([k]), b"x" * 20)
    c.put(b"big", b"x" * 26)  # over a quarter of the bound: not kept
    assert c.get(b"big") is None and c.get(bytes([0])) == b"x" * 20
    c.put(bytes([9]), b"y" * 20)  # over the bound: the least recently used (1) goes, 0 was just read
    assert c.get(bytes([1])) is None and c.get(bytes([0])) is not None and len(c) == 5
