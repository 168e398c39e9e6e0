"""The EvalPlus mode with the real sandbox: EvalPlus' limit formula on measured reference CPU times, the
reference-time cache, stop-at-first-failure, and a slow-but-correct answer to real MBPP+ / HumanEval+
tasks that the EvalPlus mode fails and the default mode passes (through apps.bon_eval)."""
from __future__ import annotations

import json

import pytest

from apps import bon_eval
from data_prep.evalplus_mode import (EvalPlusLimits, ReferenceTimeCache, evalplus_time_limits, machine_identity,
                                     task_key)
from sandbox import Job, SandboxPool

BURN = ("def _burn(s):\n    import time\n    t = time.process_time()\n    while time.process_time() - t < s:\n"
        "        pass\n")
# The reference spends ~0.5 s of CPU on input 3 only: that test's limit is 4 x that, the others get the floor.
SLOW_REF = {"id": "slow_ref", "source": "synthetic", "canonical_solution": BURN + "def f(x):\n    if x == 3:\n"
            "        _burn(0.5)\n    return x + 1\n", "test_cases": [f"assert f({i}) == {i + 1}" for i in range(6)]}


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, timeout_s=5.0, memory_mb=1024, program_timeout_s=60.0) as p:
        yield p


def test_formula():
    ep = EvalPlusLimits()
    assert (ep.limit(0.0), ep.limit(0.25), ep.limit(0.3), ep.limit(2.0)) == (1.0, 1.0, pytest.approx(1.2), 8.0)
    assert EvalPlusLimits(0.5, 2.0).limit(0.1) == 0.5 and EvalPlusLimits(0.5, 2.0).resolution_s == 0.25
    with pytest.raises(ValueError, match="time_limit_factor"):
        EvalPlusLimits(1.0, 0.0)


def test_limits_from_measured_reference_and_the_cache(pool, tmp_path):
    lim = evalplus_time_limits([SLOW_REF], pool, cache_dir=tmp_path)["slow_ref"]
    assert [x for i, x in enumerate(lim) if i != 3] == [1.0] * 5
    assert 1.8 <= lim[3] <= 2.6  # 4 x ~0.5 s of CPU, measured in the sandbox
    [path] = tmp_path.glob("evalplus-reference-*.json")
    data = json.loads(path.read_text())
    assert data["identity"] == machine_identity(pool)
    entry = data["tasks"][task_key(SLOW_REF)]
    assert entry["resolution_s"] == 0.25 and len(entry["ref_cpu_s"]) == 6
    # A second call reads the cache instead of measuring: change the stored time, see the new limit.
    entry["ref_cpu_s"][0] = 2.0
    path.write_text(json.dumps(data))
    assert evalplus_time_limits([SLOW_REF], pool, cache_dir=tmp_path)["slow_ref"][0] == 8.0
    # Another task content is another key: the cached entry is not reused for changed tests.
    changed = {**SLOW_REF, "test_cases": SLOW_REF["test_cases"][:3]}
    assert task_key(changed) != task_key(SLOW_REF)
    assert evalplus_time_limits([changed], pool, cache_dir=tmp_path)["slow_ref"] == (1.0,) * 3
    assert len(json.loads(path.read_text())["tasks"]) == 2  # merged, not overwritten
    # A cache made on another machine is refused with the file named.
    other = {**data["identity"], "cpu": "another cpu"}
    path.write_text(json.dumps({"identity": other, "tasks": {}}))
    with pytest.raises(ValueError, match="not this machine"):
        ReferenceTimeCache(tmp_path, machine_identity(pool))._load()


# Expected values from a reference function (MBPP+/HumanEval+'s ``ref_func`` shape) that is slow on
# input 3, while the canonical solution is fast: EvalPlus times the call alone, so every limit is the floor.
SLOW_EXPECTED = {"id": "slow_expected", "source": "synthetic", "canonical_solution": "def f(x):\n    return x + 1\n",
                 "test_setup": BURN + "def ref_func(x):\n    if x == 3:\n        _burn(0.6)\n    return x + 1\n",
                 "test_cases": [f"assert f({i}) == ref_func({i})" for i in range(6)]}


def test_expected_values_cpu_is_not_the_references(pool, tmp_path):
    [res] = pool.run_many([Job("e", SLOW_EXPECTED["canonical_solution"], tuple(SLOW_EXPECTED["test_cases"]),
                               setup=SLOW_EXPECTED["test_setup"])])
    assert res.all_passed and 0.5 <= res.expected_cpu_s <= res.cpu_s  # ref_func ran apart, and is reported
    assert evalplus_time_limits([SLOW_EXPECTED], pool, cache_dir=tmp_path)["slow_expected"] == (1.0,) * 6


def test_stop_at_first_failure(pool):
    prog = BURN + "def f(x):\n    _burn({1: 10, 2: 1.5}.get(x, 0))\n    return x + 1\n"
    tests = ["assert f(0) == 1", "assert f(1) == 2", "assert f(2) == 3", "assert f(3) == 99", "assert f(4) == 5"]
    budgets = (1, 0.5, 5, 1, 1)
    full = pool.run(Job("full", prog, tests, test_timeouts_s=budgets))
    assert [t.status for t in full.tests] == ["passed", "timeout", "passed", "failed", "passed"]
    assert full.cpu_s > 1.9  # 0.5 s to the timeout, 1.5 s for test 2
    stop = pool.run(Job("stop", prog, tests, test_timeouts_s=budgets, stop_at_first_failure=True))
    assert [t.status for t in stop.tests] == ["passed", "timeout", "failed", "failed", "failed"]
    assert {t.reason for t in stop.tests[2:]} == {"skipped"}
    assert stop.cpu_s < 1.4  # test 2 never ran: the harness stopped at the timeout
    # a wrong value is decided on the host, which sends the tests in chunks (1, 4, 16, ...): the
    # slow tests after a wrong value in the first chunk never run
    wrong_first = pool.run(Job("wrong_first", prog, ["assert f(0) == 99"] + ["assert f(2) == 3"] * 3,
                               test_timeouts_s=(1, 5, 5, 5), stop_at_first_failure=True))
    assert [t.reason for t in wrong_first.tests] == ["assertion"] + ["skipped"] * 3
    assert wrong_first.cpu_s < 0.5
    wrong = pool.run(Job("wrong", "def f(x):\n    return x + 1\n", tests[2:], stop_at_first_failure=True))
    assert [t.status for t in wrong.tests] == ["passed", "failed", "failed"] and wrong.tests[2].reason == "skipped"
    raised = pool.run(Job("raised", "def f(x):\n    return x + 1 if x != 3 else 1 // 0\n", tests[2:],
                          stop_at_first_failure=True))
    assert [(t.status, t.reason) for t in raised.tests] == [("passed", ""), ("error", "ZeroDivisionError"),
                                                            ("failed", "skipped")]


def test_stop_mode_keeps_host_side_verdicts(pool):
    """Under stop_at_first_failure a test's holes are still all evaluated and judged on the host (a hole
    that raises does not fail a test whose assertion short-circuits past it), and expected values
    computed in the clean child are timed by the job's budget, not by the program's per-test budget."""
    prog = "def g(x):\n    return None if x < 3 else (x - 3,)\n"
    tests = ["assert g(1) is None or g(1)[0] == 0", "assert g(3) is None or g(3)[0] == 0", "assert g(4)[0] == 1"]
    r = pool.run(Job("short", prog, tests, stop_at_first_failure=True))
    assert [t.status for t in r.tests] == ["passed"] * 3
    bad = pool.run(Job("bad", prog, ["assert g(1)[0] == 0"] + tests[1:], stop_at_first_failure=True))
    assert [(t.status, t.reason) for t in bad.tests] == [("error", "TypeError"), ("failed", "skipped"),
                                                        ("failed", "skipped")]
    setup = BURN + "def ref(x):\n    _burn(0.6)\n    return x + 1\n"
    slow_expected = ["assert f(1) == ref(1)", "assert f(2) == ref(2)"]
    job = Job("clean", "def f(x):\n    return x + 1\n", slow_expected, setup=setup, timeout_s=5.0,
              test_timeouts_s=(0.2, 0.2), stop_at_first_failure=True)
    assert [t.status for t in pool.run(job).tests] == ["passed", "passed"]


def _slow_but_correct(rec: dict) -> str:
    """The canonical solution, made to spend 1.3 s of CPU on its first call: correct, but too slow for a
    1 s limit on that input."""
    ep = rec["entry_point"]
    return (rec["canonical_solution"] + "\n" + BURN + f"_first = [True]\n_orig = {ep}\n\n\ndef {ep}(*a, **k):\n"
            "    if _first[0]:\n        _first[0] = False\n        _burn(1.3)\n    return _orig(*a, **k)\n")


@pytest.mark.parametrize("bench,rid", [("mbppplus", "mbppplus_2"), ("humanevalplus", "humanevalplus_0")])
def test_slow_but_correct_fails_only_in_the_evalplus_mode(pool, load, tmp_path, bench, rid):
    rec = next(r.to_dict() for r in load(bench) if r.id == rid)
    answers = {rid: [f"```python\n{rec['canonical_solution']}\n```", f"```python\n{_slow_but_correct(rec)}\n```"]}
    common = ["--model", "unused", "--engine", "hf", "--output_dir", str(tmp_path), "--plus_timeout_s", "5"]
    default = bon_eval.execute(bon_eval.parse_args(common), bench, [rec], answers, pool)
    evalplus = bon_eval.execute(bon_eval.parse_args(common + ["--evalplus_mode", "--evalplus_cache_dir",
                                                              str(tmp_path / "cache")]), bench, [rec], answers, pool)
    canon, slow = (bon_eval._key(rid, bon_eval.exec_program(rec, a)) for a in answers[rid])
    assert default[canon]["all_passed"] and default[slow]["all_passed"]
    assert evalplus[canon]["all_passed"] and not evalplus[slow]["all_passed"]
    n = len(rec["test_cases"])
    assert evalplus[slow]["statuses"] == {"timeout": 1, "failed": n - 1}  # stopped at its first test


def test_reference_helpers_do_not_replace_the_programs(pool, load):
    """Mbpp/630: the reference's helper `adjac` must not replace a program's own `adjac` (the setup runs
    after the program in its globals); a wrong helper under the same name fails, a right one passes."""
    rec = next(r for r in load("mbppplus") if r.id == "mbppplus_630")
    right = rec.canonical_solution
    wrong = right.replace("range(ele[0] - 1, ele[0] + 2)", "range(ele[0] + 1, ele[0] + 2)")
    assert wrong != right and "def adjac(" in wrong
    tests = tuple(rec.test_cases[:8])
    results = [pool.run(Job(id=name, program=prog, tests=tests, setup=rec.test_setup))
               for name, prog in (("right", right), ("wrong", wrong))]
    assert results[0].all_passed, results[0]
    assert results[1].passed == 0, results[1]
    # ref_func is the only reference name the program's globals get
    assert "\nref_func = _evalplus_reference()" in rec.test_setup and "\ndef adjac(" not in rec.test_setup
