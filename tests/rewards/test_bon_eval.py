"""apps.bon_eval end to end with a scripted engine: the columns, caching and resumption, prompts,
real benchmark tasks through the sandbox, and the launch script."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from apps import bon_eval
from rewards.bon import select_best
from trainer.engines import Completion, RolloutEngine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "def f(u, v):\n    # return the {op} of u and v\n    return "
# Per operation: the greedy answer, then the samples in order.
SCRIPT = {"sum": ["u + v", "u - v", "u + v", "u +", "u + v"],
          "max": ["min(u, v)", "min(u, v)", "min(u, v)", "min(u, v)", "min(u, v)"],
          "product": ["u * v", "u * v", "u * v", "u + v", "u*v"]}
TESTS = {"sum": ["assert f(1, 2) == 3", "assert f(0, 5) == 5"], "max": ["assert f(1, 2) == 2", "assert f(4, 3) == 4"],
         "product": ["assert f(2, 3) == 6", "assert f(5, 1) == 5"]}


class ScriptedEngine(RolloutEngine):
    """Answers from a function of (decoded prompt, sample index or 'greedy'); counts calls; can fail."""

    def __init__(self, model_path, answer, fail_at_call=None, **kw):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_path)
        self.answer, self.fail_at_call, self.calls = answer, fail_at_call, 0

    def generate(self, prompts, params):
        self.calls += 1
        if self.calls == self.fail_at_call:
            raise RuntimeError("engine crashed")
        out = []
        for i, p in enumerate(prompts):
            text = self.tok.decode(p)
            for s in range(params.n):
                ans = self.answer(text, "greedy" if params.temperature == 0 else s)
                ids = tuple(self.tok(ans, add_special_tokens=False)["input_ids"]) + (self.tok.eos_token_id,)
                out.append(Completion(i, s, tuple(p), ids, (0.0,) * len(ids), "stop"))
        return out

    def load_weights(self, named_tensors):
        pass


def _demo_answer(text, k):
    op = next(op for op in SCRIPT if f"the {op} of" in text)
    return SCRIPT[op][0 if k == "greedy" else 1 + k]


@pytest.fixture
def engines(monkeypatch):
    made = []

    def make(kind, path, **kw):
        made.append(ScriptedEngine(path, **{**made_kwargs, **kw}))
        return made[-1]

    made_kwargs = {"answer": _demo_answer}
    monkeypatch.setattr("trainer.engines.make_engine", make)
    return made, made_kwargs


@pytest.fixture
def demo_records(tmp_path):
    path = tmp_path / "demo.jsonl"
    path.write_text("".join(json.dumps({"id": f"t_{op}", "question": PREFIX.format(op=op),
                                        "program_prefix": PREFIX.format(op=op), "test_cases": TESTS[op]}) + "\n"
                            for op in SCRIPT))
    return str(path)


def _argv(model, records, out, *extra):
    return ["--model", model, "--benchmarks", f"demo={records}", "--n_list", "2,4", "--output_dir", str(out),
            "--engine", "hf", "--sandbox_workers", "1", "--max_new_tokens", "8", *extra]


def _lines(path):
    return sum(1 for _ in open(path)) if os.path.exists(path) else 0


def test_columns_resume_and_caches(tiny_lm, tiny_rm, demo_records, engines, tmp_path, capsys):
    made, kw = engines
    out = tmp_path / "run"
    kw["fail_at_call"] = 3  # greedy call of the second task: the first task's samples are cached
    with pytest.raises(RuntimeError, match="engine crashed"):
        bon_eval.main(_argv(tiny_lm, demo_records, out, "--rm", tiny_rm, "--gen_chunk", "1"))
    assert _lines(out / "demo" / "samples.jsonl") == 1
    kw["fail_at_call"] = None
    report = bon_eval.main(_argv(tiny_lm, demo_records, out, "--rm", tiny_rm, "--gen_chunk", "1"))
    assert made[-1].calls == 4  # two tasks left, greedy + samples each
    r = report["benchmarks"]["demo"]
    # passes: sum [F, T, F, T], max [F, F, F, F], product [T, T, F, T]; greedy: sum T, max F, product T.
    assert r["tasks"] == 3 and r["greedy"] == pytest.approx(2 / 3)
    assert r["best_of"]["2"]["average"] == pytest.approx(0.5) and r["best_of"]["2"]["oracle"] == pytest.approx(2 / 3)
    assert r["best_of"]["4"]["average"] == pytest.approx((0.5 + 0 + 0.75) / 3)
    rows = {row["id"]: row for row in map(json.loads, open(out / "demo" / "per_task.jsonl"))}
    assert rows["t_sum"]["passes"] == [False, True, False, True]
    assert rows["t_product"]["passes"] == [True, True, False, True]
    s = rows["t_sum"]["scores"]
    assert s[1] == s[3] and s[0] != s[1]  # same program, same score; scores do differ
    for n in ("2", "4"):
        want = sum(row["passes"][select_best(row["scores"][:int(n)])] for row in rows.values()) / 3
        assert r["best_of"][n]["rm"] == pytest.approx(want) and rows["t_sum"]["rm_pick"][n] == select_best(s[:int(n)])
    assert json.load(open(out / "results.json"))["benchmarks"] == report["benchmarks"]
    table = capsys.readouterr().out
    assert "demo" in table and "RM" in table
    # Distinct programs run once: sum {u + v, u - v, u +}, max {min}, product {u * v, u + v, u*v}.
    exec_file = next(p for p in os.listdir(out / "demo") if p.startswith("exec-"))
    assert _lines(out / "demo" / exec_file) == 7
    # A finished run re-run: nothing generated, run or scored again; same numbers.
    rm_file = next(p for p in os.listdir(out / "demo") if p.startswith("rm-"))
    n_scores = _lines(out / "demo" / rm_file)
    again = bon_eval.main(_argv(tiny_lm, demo_records, out, "--rm", tiny_rm))
    assert made[-1].calls == 4 and again["benchmarks"] == report["benchmarks"]  # no new engine was made
    assert _lines(out / "demo" / exec_file) == 7 and _lines(out / "demo" / rm_file) == n_scores
    # A retrained RM at the same path is scored afresh; the samples and sandbox results are reused.
    import torch

    from rewards.reward_model import RewardModel

    retrained = RewardModel.from_pretrained(tiny_rm)
    with torch.no_grad():
        retrained.v_head.summary.weight.neg_()
    retrained.save_pretrained(str(tmp_path / "rm2"))
    shutil.copytree(tiny_rm, tmp_path / "rm", dirs_exist_ok=True)
    first = bon_eval.main(_argv(tiny_lm, demo_records, out, "--rm", str(tmp_path / "rm")))
    shutil.copytree(tmp_path / "rm2", tmp_path / "rm", dirs_exist_ok=True)
    second = bon_eval.main(_argv(tiny_lm, demo_records, out, "--rm", str(tmp_path / "rm")))
    assert first["benchmarks"] == report["benchmarks"]  # same weights as tiny_rm: same numbers
    assert len([p for p in os.listdir(out / "demo") if p.startswith("rm-")]) == 3
    flipped = {row["id"]: row["scores"] for row in map(json.loads, open(out / "demo" / "per_task.jsonl"))}
    assert flipped["t_sum"][1] != pytest.approx(s[1]) and _lines(out / "demo" / exec_file) == 7
    assert second["benchmarks"]["demo"]["best_of"]["4"]["oracle"] == r["best_of"]["4"]["oracle"]
    # Without an RM: no RM column, same other columns.
    no_rm = bon_eval.main(_argv(tiny_lm, demo_records, out))["benchmarks"]["demo"]
    assert "rm" not in no_rm["best_of"]["4"] and no_rm["best_of"]["4"]["oracle"] == r["best_of"]["4"]["oracle"]
    # Settings that would change the samples stop the run; so does asking for more samples than cached.
    with pytest.raises(SystemExit, match="--temperature"):
        bon_eval.main(_argv(tiny_lm, demo_records, out, "--temperature", "0.7"))
    with pytest.raises(SystemExit, match="best-of-8"):
        bon_eval.main(_argv(tiny_lm, demo_records, out, "--n_list", "8"))


def test_changed_policy_files_stop_the_run(tiny_lm, tmp_path):
    policy = tmp_path / "policy"
    shutil.copytree(tiny_lm, policy)
    args = bon_eval.parse_args(["--model", str(policy), "--output_dir", str(tmp_path / "out"), "--engine", "hf"])
    bon_eval.check_config(args)
    bon_eval.check_config(args)  # unchanged: fine
    st = os.stat(policy / "model.safetensors")
    os.utime(policy / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a re-export
    with pytest.raises(SystemExit, match="its files changed"):
        bon_eval.check_config(args)


def test_chat_prompts(tiny_lm):
    from transformers import AutoTokenizer

    from data_prep.prompts import SOLVE, load_chat_template

    tok, template = AutoTokenizer.from_pretrained(tiny_lm), load_chat_template(SOLVE)
    mbpp = {"question": "Write a function to add two numbers.", "entry_point": "add",
            "test_cases": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}
    he = {"question": "def add(a, b):\n    \"\"\"Add a and b.\n    >>> add(1, 2)\n    3\n    \"\"\"\n",
          "entry_point": "add", "test_cases": ["assert add(5, 5) == 10"]}
    ids, prefill = bon_eval.make_prompt(tok, template, mbpp, 1)
    text = tok.decode(ids)
    assert prefill.endswith("```python\n") and text.endswith(prefill)
    assert "assert add(1, 2) == 3" in text and "assert add(0, 0) == 0" not in text
    assert text.startswith("<|im_start|>user\n") and "<|im_start|>assistant\n" + prefill in text
    he_text = tok.decode(bon_eval.make_prompt(tok, template, he, 1)[0])
    assert "def add(a, b):" in he_text and "assert add(5, 5)" not in he_text  # signature given: no tests shown
    assert bon_eval.shown_tests(mbpp, 0) == []
    answer = prefill + "def add(a, b):\n    return a + b\n```\nassert add(1, 2) == 3\n"
    assert bon_eval.exec_program(mbpp, answer) == "def add(a, b):\n    return a + b\n"


def test_real_benchmarks_through_the_sandbox(tiny_lm, tiny_rm, data_dir, engines, tmp_path):
    """Canonical solutions as even samples, a wrong answer as odd ones: HumanEval and MBPP+ (plus budgets)."""
    from data_prep.benchmarks import load_benchmark

    made, kw = engines
    canon = {r.question.strip(): r.canonical_solution for name in ("humaneval", "mbppplus")
             for r in load_benchmark(name, str(data_dir))[:2]}

    def answer(text, k):
        q = next(q for q in canon if q in text)
        return canon[q] + "\n```\n" if k == "greedy" or k % 2 == 0 else "def nothing():\n    pass\n```\n"

    kw["answer"] = answer
    report = bon_eval.main(["--model", tiny_lm, "--rm", tiny_rm, "--benchmarks", "humaneval,mbppplus", "--limit", "2",
                            "--n_list", "2", "--output_dir", str(tmp_path), "--engine", "hf",
                            "--data_dir", str(data_dir), "--sandbox_workers", "2"])
    for name in ("humaneval", "mbppplus"):
        r = report["benchmarks"][name]
        assert r["tasks"] == 2 and r["greedy"] == 1.0
        assert r["best_of"]["2"]["average"] == 0.5 and r["best_of"]["2"]["oracle"] == 1.0
    plus_exec = next(p for p in os.listdir(tmp_path / "mbppplus") if p.startswith("exec-"))
    he_exec = next(p for p in os.listdir(tmp_path / "humaneval") if p.startswith("exec-"))
    assert plus_exec != he_exec  # the plus sets run under their own (larger) limits


def test_launch_script_passes_arguments_through(tmp_path):
    script = os.path.join(ROOT, "launch", "bon_eval.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    out = subprocess.run(["bash", script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    for opt in ("--n_list", "--plus_timeout_s", "--benchmarks", "--rm"):
        assert opt in out.stdout
