"""The harness keeps compiled code across jobs (sandbox/harness.py ``_CodeCache``): the same tests and
programs compile once, rewritten checks still report to the job that runs them, compile errors still
reach each program, and the cache stays within its bound."""
import pytest

from sandbox import Job, SandboxPool, harness

# HumanEval's shape: asserts inside check(candidate) are rewritten to report their operands to the host
SETUP = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n"
TESTS = ("check(square)",)
RIGHT, WRONG = "def square(x):\n    return x * x\n", "def square(x):\n    return x + 2\n"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1, timeout_s=5.0) as p:
        yield p


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # a constant called: what the host writes
def test_cached_code_is_the_same_object_and_rebinds_each_jobs_checker():
    src = "'\\x00sandbox-check'(1)"  # how the host writes a call of the checker
    consts_a, consts_b = {"\x00sandbox-check": lambda x: ("A", x)}, {"\x00sandbox-check": lambda x: ("B", x)}
    plain = harness._compile("1 + 1", "<t>", "eval", consts_a)
    assert harness._compile("1 + 1", "<t>", "eval", consts_b) is plain  # cached, nothing to bind
    a, b = harness._compile(src, "<t>", "eval", consts_a), harness._compile(src, "<t>", "eval", consts_b)
    assert eval(a) == ("A", 1) and eval(b) == ("B", 1)  # one compile, each job's own function bound
    err = harness._compile("def (:", "<program>", "exec")
    assert isinstance(err, SyntaxError) and harness._compile("def (:", "<program>", "exec") is err


def test_the_cache_stays_within_its_bound():
    cache = harness._CodeCache()
    cache.LIMIT = 64 << 10
    for i in range(2000):
        cache.put((f"x + {i}", "<t>", "eval"), object())
    assert cache.size <= cache.LIMIT and 0 < len(cache.codes) < 2000
    assert cache.get(("x + 0", "<t>", "eval")) is None and cache.get(("x + 1999", "<t>", "eval")) is not None
    cache.put(("y" * (cache.LIMIT // 8), "<t>", "eval"), object())  # over a quarter of the bound: not kept
    assert cache.get(("y" * (cache.LIMIT // 8), "<t>", "eval")) is None


def test_verdicts_stay_each_programs_own_when_code_is_reused(pool):
    order = [RIGHT, WRONG, RIGHT, WRONG]
    results = [pool.run(Job(str(i), prog, TESTS, setup=SETUP)) for i, prog in enumerate(order)]
    assert [r.all_passed for r in results] == [True, False, True, False], [r.to_dict() for r in results]
    assert all(r.tests[0].reason == "assertion" for r in results[1::2])
    chunked = [pool.run(Job(f"s{i}", prog, TESTS * 6, setup=SETUP, stop_at_first_failure=True))
               for i, prog in enumerate(order)]
    assert [r.passed for r in chunked] == [6, 0, 6, 0]


def test_a_program_that_does_not_compile_fails_every_time(pool):
    for i in range(3):
        r = pool.run(Job(f"bad{i}", "def square(x:\n    return x\n", ("assert square(2) == 4",)))
        assert (r.tests[0].status, r.tests[0].reason) == ("error", "program_error"), r.to_dict()
        assert "SyntaxError" in r.tests[0].detail
