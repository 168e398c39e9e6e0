"""python -m sandbox run: input validation, incremental output, resume."""
import json
import subprocess
import sys

import pytest

from sandbox.__main__ import parse_job

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def write_jobs(path, jobs):
    path.write_text("".join((j if isinstance(j, str) else json.dumps(j)) + "\n" for j in jobs))


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "sandbox", "run", "--progress_bar", "false", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


GOOD = {"id": "ok", "program": "def f(x):\n    return x + 1\n", "tests": ["assert f(1) == 2", "assert f(2) == 4"]}


def test_cli_runs_jobs_in_order_and_reports_bad_lines(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    out = tmp_path / "out.jsonl"
    write_jobs(jobs, [
        GOOD,
        "{not json",
        {"id": "no-tests", "program": "x = 1"},
        {"id": 5, "program": "", "tests": []},
        {"id": "slow", "program": "def f():\n    while True: pass\n", "tests": ["assert f() == 1"], "timeout_s": 0.3},
        {"id": "last", "program": "def g():\n    return [1, 2]\n", "tests": ["assert g() == [1, 2]"]},
        {"id": "budgets", "program": "def f():\n    while True: pass\n", "tests": ["pass", "assert f() == 1", "pass"],
         "test_timeouts_s": [1, 0.3, 1], "stop_at_first_failure": True},
    ])
    p = run_cli("--input", str(jobs), "--output", str(out), "--sandbox_workers", "2")
    assert p.returncode == 1, p.stderr  # malformed lines make the exit status non-zero
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("id") for r in rows] == ["ok", None, "no-tests", 5, "slow", "last", "budgets"]
    assert rows[0]["pass_rate"] == 0.5 and rows[0]["all_passed"] is False
    assert [t["status"] for t in rows[0]["tests"]] == ["passed", "failed"]
    assert "jobs.jsonl:2: not valid JSON" in rows[1]["error"]
    assert "jobs.jsonl:3: field 'tests'" in rows[2]["error"]
    assert "jobs.jsonl:4: field 'id'" in rows[3]["error"]
    assert rows[4]["tests"][0]["status"] == "timeout"
    assert rows[5]["all_passed"] is True
    assert [t["status"] for t in rows[6]["tests"]] == ["passed", "timeout", "failed"]
    assert rows[6]["tests"][2]["reason"] == "skipped"
    assert "jobs.jsonl:2" in p.stderr


def test_cli_resumes_without_rerunning(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    out = tmp_path / "out.jsonl"
    write_jobs(jobs, [dict(GOOD, id=f"j{i}") for i in range(6)])
    # an interrupted run: two whole lines and a torn third one
    first = json.dumps({"id": "j0", "pass_rate": 0.25, "all_passed": False, "tests": []})
    out.write_text(first + "\n" + first.replace("j0", "j1") + "\n" + '{"id": "j2", "pass')
    p = run_cli("--input", str(jobs), "--output", str(out))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"j{i}" for i in range(6)]
    assert rows[0]["pass_rate"] == 0.25 and rows[1]["pass_rate"] == 0.25  # kept, not recomputed
    assert all(r["pass_rate"] == 0.5 for r in rows[2:])
    assert "resuming: 2 of 6" in p.stderr


def test_cli_help_and_bad_options():
    p = subprocess.run([sys.executable, "-m", "sandbox", "run", "--help"], cwd=ROOT, capture_output=True, text=True)
    for opt in ("--input", "--output", "--sandbox_workers", "--sandbox_timeout_s", "--sandbox_memory_mb",
                "--sandbox_unsafe_no_isolation"):
        assert opt in p.stdout
    p = run_cli("--input", "x", "--output", "y", "--sandbox_workers", "0")
    assert p.returncode == 2 and "--sandbox_workers" in p.stderr


def test_cli_old_spellings_still_run_with_a_warning(tmp_path):
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    write_jobs(jobs, [GOOD, {"id": "slow", "program": "def f():\n    while True: pass\n",
                             "tests": ["assert f() == 1"]}])
    p = subprocess.run([sys.executable, "-m", "sandbox", "run", "--quiet", "--input", str(jobs), "--output", str(out),
                        "--workers", "1", "--timeout-s", "0.3", "--memory-mb", "512"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["pass_rate"] == 0.5 and rows[1]["tests"][0]["status"] == "timeout"  # the 0.3 s budget held
    for old, new in (("--quiet", "--progress_bar false"), ("--workers", "--sandbox_workers"),
                     ("--timeout-s", "--sandbox_timeout_s"), ("--memory-mb", "--sandbox_memory_mb")):
        assert f"warning: {old} is deprecated and will be removed in the next release; use {new}\n" in p.stderr
    assert "sandbox: " not in p.stderr  # --quiet still hides the progress bar


@pytest.mark.parametrize("line,msg", [
    ('{"id": "a", "program": "x", "tests": "assert 1"}', "field 'tests'"),
    ('{"id": "a", "program": "x", "tests": [], "timeout_s": -1}', "field 'timeout_s'"),
    ('{"id": "a", "program": "x", "tests": [], "memory_mb": "big"}', "field 'memory_mb'"),
    ('{"id": "a", "program": "x", "tests": ["pass"], "test_timeouts_s": [1, 2]}', "field 'test_timeouts_s'"),
    ('{"id": "a", "program": "x", "tests": [], "stop_at_first_failure": 1}', "field 'stop_at_first_failure'"),
    ('{"id": "a", "program": 3, "tests": []}', "field 'program'"),
    ("[1, 2]", "expected a JSON object"),
])
def test_parse_job_names_the_field(line, msg):
    with pytest.raises(ValueError) as e:
        parse_job(line, 7, "in.jsonl")
    assert str(e.value).startswith("in.jsonl:7: ") and msg in str(e.value)
