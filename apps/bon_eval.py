"""Greedy pass@1 and best-of-N with a reward model on HumanEval(+) and MBPP(+).

    python -m apps.bon_eval --model POLICY --rm RM_DIR [--benchmarks humaneval,mbppplus] [--n_list 16,32,64]

For every task: one greedy answer and max(N) samples (temperature 1.0) are generated ONCE; best-of-N
uses the first N samples, for every N in --n_list. Columns (rewards/bon.py): greedy, average (mean
pass over the N samples), oracle (any of them passes), RM (the sample with the highest raw RM score;
ties: lowest index). "Pass" means every test of the task passes in the sandbox; the plus sets carry
their extra inputs as tests and get larger per-test time and memory budgets.

--evalplus_mode scores as EvalPlus 0.3.1 does, on CPU time: each test's budget is max(1 s, 4 x the
canonical solution's CPU time on it), reference times measured once per machine and cached
(data_prep/evalplus_mode.py), a program stops at its first failing test, and expected values computed
by a reference function are computed once per task, as EvalPlus' ground truth is
(sandbox/expected_cache.py). The default keeps the fixed budgets above and runs every test.

Prompts: records with ``program_prefix`` (completion style, e.g. the CPU demo's tasks) are prompted
with the prefix as plain text and the program is prefix + answer. All others use the chat template
with the solver prompt of data_prep (``--prompt``, default data_prep/prompts/solve.txt: the question in
a docstring and an assistant turn prefilled up to an opening python fence); the answer is prefill +
generated text and the program is ``extract_code`` of it. Tests shown in the prompt: none when the
question already defines the entry point (HumanEval style: signature and examples are in it), else
the first --prompt_tests (MBPP style, as EvalPlus does: the test names the function to write).

Every step is cached under OUTPUT_DIR/<benchmark>/ as append-only JSONL, so a crashed run continues:
samples.jsonl (answers), exec-<limits>.jsonl (sandbox results per distinct program), rm-<model>.jsonl
(raw RM scores per distinct program, per RM and its files; another or a retrained --rm reuses the samples
and execution). Outputs:
OUTPUT_DIR/results.json, OUTPUT_DIR/<benchmark>/per_task.jsonl and a table on stdout.
Generation settings are recorded in OUTPUT_DIR/eval_config.json; a re-run with other ones stops.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time

from common.extract import extract_code
from common.io import AppendWriter, atomic_write_text, iter_records, write_records
from common.schema import task_tests
from common.options import add_deprecated
from data_prep.evalplus_mode import MIN_TIME_LIMIT_S, TIME_LIMIT_FACTOR
from rewards.bon import format_table, select_best, summarize
from sandbox import options as sandbox_options

DEFAULT_BENCHMARKS = "humaneval,humanevalplus,mbpp,mbppplus"
GEN_KEYS = ("model", "model_files", "temperature", "top_p", "max_new_tokens", "seed", "prompt", "prompt_tests")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m apps.bon_eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--model", required=True, help="policy: local dir or hub id")
    a("--rm", default="", help="reward model dir for the RM column; empty: no RM column")
    a("--benchmarks", default=DEFAULT_BENCHMARKS,
      help="comma list of humaneval, humanevalplus, mbpp, mbppplus, mbpp_sanitized, "
           "or NAME=PATH for a JSONL of AceCode records")
    a("--n_list", default="16,32,64", help="comma list of N for best-of-N")
    a("--output_dir", default="outputs/bon_eval", help="caches, per-task details and results.json")
    a("--data_dir", default=None, help="benchmark files (default: $ACECODER_DATA_DIR or ../shared/data)")
    a("--limit", type=int, default=0, help="first K tasks of each benchmark (0: all)")
    a("--engine", default="auto", choices=["auto", "vllm", "hf"], help="rollout engine; auto: vllm with a GPU, else hf")
    a("--engine_kwargs", default="{}", help="JSON keyword arguments for the engine (e.g. tensor_parallel_size)")
    a("--isolate_generation", default="auto", choices=["auto", "on", "off"],
      help="generate in a child process, so its GPU memory is free for the RM; auto: on for vllm")
    a("--temperature", type=float, default=1.0, help="sampling temperature of the N samples")
    a("--top_p", type=float, default=1.0, help="nucleus sampling of the N samples")
    a("--max_new_tokens", type=int, default=1024, help="per answer")
    a("--seed", type=int, default=0, help="sampling seed")
    a("--gen_chunk", type=int, default=64, help="tasks per generate call (the unit of resumption)")
    a("--prompt", default=None, help="chat prompt file in data_prep's template format (default: solver prompt)")
    a("--prompt_tests", type=int, default=1, help="tests shown in the prompt when the question has no signature")
    a("--plus_timeout_s", type=float, default=20.0, help="per-test CPU budget on the plus sets (MBPP+ 255 needs ~7 s; "
      "the other sets: --sandbox_timeout_s)")
    a("--plus_memory_mb", type=int, default=4096, help="address-space limit on the plus sets (MBPP+ 255 needs ~2.5 GB; "
      "the other sets: --sandbox_memory_mb)")
    a("--evalplus_mode", action="store_true",
      help="EvalPlus-compatible verdicts: each test's CPU budget is max(--evalplus_min_time_limit_s, "
           "--evalplus_time_limit_factor x the canonical solution's CPU time on it), measured once per machine")
    a("--evalplus_min_time_limit_s", type=float, default=MIN_TIME_LIMIT_S, help="EvalPlus mode: the budget's floor")
    a("--evalplus_time_limit_factor", type=float, default=TIME_LIMIT_FACTOR,
      help="EvalPlus mode: budget = factor x the reference time")
    a("--evalplus_cache_dir", default=None, help="EvalPlus mode: where reference times are cached "
                                                 "(default: $ACECODER_CACHE_DIR or ~/.cache/acecoder)")
    a("--stop_at_first_failure", default="auto", choices=["auto", "on", "off"],
      help="stop a program at its first failing test (later tests count as failed); auto: on in the EvalPlus mode")
    a("--rm_batch_size", type=int, default=16, help="pairs per RM forward")
    a("--rm_max_length", type=int, default=2048, help="RM input tokens (longer inputs lose prompt tokens)")
    a("--rm_device", default=None, help="RM device (default: cuda if available)")
    a("--phase", default="all", choices=["all", "generate"], help="generate: stop after the samples are cached")
    # The pool's settings: the --sandbox_* options of every command. A program's wall-clock limit is
    # 300 s here (the plus sets' tests are long); HumanEval+ 15's expected outputs take several MiB.
    sandbox_options.add_sandbox_options(
        p, old_spellings={"--timeout_s": "--sandbox_timeout_s", "--memory_mb": "--sandbox_memory_mb",
                          "--program_timeout_s": "--sandbox_program_timeout_s"},
        workers=os.cpu_count() or 2, program_timeout_s=300.0, value_limit_bytes=64 << 20)
    add_deprecated(p, "--value_limit_mb", "--sandbox_value_limit_bytes", type=int, convert=lambda mb: mb << 20,
                   hint="--sandbox_value_limit_bytes (in bytes: 64 MiB is 67108864)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    args.sandbox = sandbox_options.sandbox_config_from_args(args, p)
    try:
        args.n = sorted({int(x) for x in args.n_list.split(",") if x.strip()})
        args.engine_kwargs = json.loads(args.engine_kwargs)
    except ValueError as e:
        p.error(f"--n_list / --engine_kwargs: {e}")
    checks = [("--n_list", bool(args.n) and args.n[0] >= 1, "needs integers >= 1"),
              ("--engine_kwargs", isinstance(args.engine_kwargs, dict), "must be a JSON object"),
              ("--temperature", args.temperature > 0, "must be > 0 (greedy answers are made anyway)"),
              ("--gen_chunk", args.gen_chunk >= 1, "must be >= 1"), ("--limit", args.limit >= 0, "must be >= 0"),
              ("--benchmarks", bool(args.benchmarks.strip()), "is empty"),
              ("--evalplus_min_time_limit_s", args.evalplus_min_time_limit_s > 0, "must be > 0"),
              ("--evalplus_time_limit_factor", args.evalplus_time_limit_factor > 0, "must be > 0")]
    for opt, ok, msg in checks:
        if not ok:
            p.error(f"{opt}: {msg}")
    if args.engine == "auto":
        import torch
        args.engine = "vllm" if torch.cuda.is_available() else "hf"
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


# ----------------------------------------------------------------------------- tasks and prompts
def load_tasks(spec: str, args) -> tuple[str, list[dict]]:
    """(name, records) for a benchmark name or NAME=PATH; records as dicts with id, question, test_cases."""
    name, _, path = spec.partition("=")
    name = name.strip()
    if path:
        recs = []
        for line, rec in iter_records(path):
            recs.append({**rec, "test_cases": task_tests(rec, path, line)})
    else:
        from data_prep.benchmarks import load_benchmark
        recs = [r.to_dict() for r in load_benchmark(name, args.data_dir)]
    if len({r["id"] for r in recs}) != len(recs):
        raise ValueError(f"{spec}: duplicate task ids")
    return name, recs[:args.limit] if args.limit else recs


def shown_tests(rec: dict, k: int) -> list[str]:
    ep = rec.get("entry_point")
    if k <= 0 or (ep and re.search(rf"\bdef\s+{re.escape(ep)}\s*\(", rec["question"])):
        return []
    return rec["test_cases"][:k]


def make_prompt(tokenizer, template, rec: dict, k: int) -> tuple[list[int], str]:
    """(prompt token ids, prefill): the answer text is prefill + the generated text."""
    if rec.get("program_prefix"):
        return tokenizer(rec["program_prefix"])["input_ids"], ""
    msgs = template.render(question=rec["question"].strip(), tests="\n".join(shown_tests(rec, k)))
    prefill = msgs.pop()["content"] if msgs[-1]["role"] == "assistant" else ""
    text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) + prefill
    return tokenizer(text, add_special_tokens=False)["input_ids"], prefill


def exec_program(rec: dict, answer: str) -> str:
    """The program that is run: the test reward's rule."""
    prefix = rec.get("program_prefix")
    return prefix + answer if prefix else extract_code(answer)


def rm_program(rec: dict, answer: str) -> str:
    """The program the RM scores: rewards.rm_reward's rule."""
    prefix = rec.get("program_prefix")
    return extract_code(prefix + answer if prefix else answer)


def _key(rid: str, program: str) -> str:
    return f"{rid}/{hashlib.sha1(program.encode()).hexdigest()[:16]}"


def _tag(*parts) -> str:
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:10]


def fingerprint(model: str) -> str:
    """A model as a cache key: a local dir by its files' names, sizes and times; a hub id by name."""
    if not os.path.isdir(model):
        return model
    files = []
    for f in sorted(os.listdir(model)):
        if f.endswith((".safetensors", ".bin", ".json")):
            st = os.stat(os.path.join(model, f))
            files.append((f, st.st_size, st.st_mtime_ns))
    return f"{os.path.abspath(model)}@{_tag(files)}"


def _read(path: str) -> dict[str, dict]:
    return {r["id"]: r for _, r in iter_records(path)} if os.path.exists(path) else {}


# ----------------------------------------------------------------------------- the three steps
def generate(args, benches: dict[str, list[dict]]) -> None:
    from transformers import AutoTokenizer

    from data_prep.prompts import SOLVE, load_chat_template
    from trainer.engines import SamplingParams, make_engine

    tokenizer, engine = AutoTokenizer.from_pretrained(args.model), None
    template = load_chat_template(args.prompt or SOLVE, required=("question",))
    max_n = args.n[-1]
    for name, recs in benches.items():
        path = os.path.join(args.output_dir, name, "samples.jsonl")
        short = [r for r in _read(path).values() if len(r["samples"]) < max_n]
        if short:
            raise SystemExit(f"{path}: cached tasks have {len(short[0]['samples'])} samples, best-of-{max_n} needs "
                             f"{max_n}: use another --output_dir, or a smaller --n_list")
        with AppendWriter(path) as out:
            for start in range(0, len(recs), args.gen_chunk):
                chunk = [r for r in recs[start:start + args.gen_chunk] if r["id"] not in out]
                if not chunk:
                    continue
                if engine is None:
                    engine = make_engine(args.engine, args.model, **engine_kwargs(args))
                prompts = [make_prompt(tokenizer, template, r, args.prompt_tests) for r in chunk]
                ids = [p[0] for p in prompts]
                greedy = engine.generate(ids, SamplingParams(n=1, temperature=0.0, max_new_tokens=args.max_new_tokens))
                sampled = engine.generate(ids, SamplingParams(n=max_n, temperature=args.temperature, top_p=args.top_p,
                                                              max_new_tokens=args.max_new_tokens,
                                                              seed=args.seed + start))

                def text(c, prompts=prompts) -> str:  # this chunk's prompts, bound now
                    return prompts[c.prompt_index][1] + tokenizer.decode(c.response_ids, skip_special_tokens=True)

                for i, rec in enumerate(chunk):
                    mine = [c for c in sampled if c.prompt_index == i]
                    out.write({"id": rec["id"], "greedy": text(greedy[i]), "samples": [text(c) for c in mine],
                               "truncated": sum(c.finish_reason == "length" for c in mine)})
                print(f"[bon_eval] {name}: generated {min(start + args.gen_chunk, len(recs))}/{len(recs)} tasks",
                      file=sys.stderr, flush=True)


def engine_kwargs(args) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    kw = {"seed": args.seed}
    if args.engine == "hf":
        kw.update(device="cuda" if cuda else "cpu", dtype="bfloat16" if cuda else "float32")
    return {**kw, **args.engine_kwargs}


def test_budgets(args, recs: list[dict], pool, limits: tuple[float, int]) -> dict[str, tuple[float, ...]]:
    """Per-test CPU budgets of the EvalPlus mode (none otherwise), from cached reference times."""
    if not args.evalplus_mode:
        return {}
    from data_prep.evalplus_mode import EvalPlusLimits, evalplus_time_limits

    ep = EvalPlusLimits(args.evalplus_min_time_limit_s, args.evalplus_time_limit_factor)
    return evalplus_time_limits(recs, pool, ep, args.evalplus_cache_dir, timeout_s=limits[0], memory_mb=limits[1])


def execute(args, name: str, recs: list[dict], answers: dict[str, list[str]], pool) -> dict[str, dict]:
    """Sandbox results per distinct (task, program), cached; the plus sets get the larger budgets."""
    plus = name.endswith("plus")
    limits = (args.plus_timeout_s, args.plus_memory_mb) if plus else (args.sandbox.timeout_s, args.sandbox.memory_mb)
    budgets = test_budgets(args, recs, pool, limits)
    stop = args.stop_at_first_failure == "on" or (args.stop_at_first_failure == "auto" and args.evalplus_mode)
    mode = [stop, sorted(budgets.items())] if budgets or stop else []  # the default mode keeps its old cache
    cap_bytes = args.sandbox.value_limit_bytes  # keyed in MiB, as when the option was --value_limit_mb
    cap = [] if cap_bytes == 1 << 20 else [cap_bytes >> 20] if cap_bytes % (1 << 20) == 0 else [f"{cap_bytes}B"]
    tag = _tag(*limits, args.sandbox.program_timeout_s, *mode, *cap)
    path = os.path.join(args.output_dir, name, f"exec-{tag}.jsonl")
    from sandbox import Job

    with AppendWriter(path) as out:
        jobs = {}
        for rec in recs:
            for answer in answers[rec["id"]]:
                program = exec_program(rec, answer)
                key = _key(rec["id"], program)
                if program.strip() and key not in out and key not in jobs:
                    jobs[key] = Job(key, program, tuple(rec["test_cases"]), setup=rec.get("test_setup") or "",
                                    timeout_s=limits[0], memory_mb=limits[1],
                                    test_timeouts_s=budgets.get(rec["id"]), stop_at_first_failure=stop,
                                    reuse_expected=args.evalplus_mode)
        t0 = time.time()
        for i, res in enumerate(pool.imap(jobs.values()), 1):
            statuses = [t.status for t in res.tests]
            out.write({"id": res.id, "all_passed": res.all_passed, "pass_rate": res.pass_rate,
                       "statuses": {s: statuses.count(s) for s in set(statuses)}})
            if i % 200 == 0 or i == len(jobs):
                print(f"[bon_eval] {name}: ran {i}/{len(jobs)} programs ({time.time() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
    return _read(path)


def score(args, name: str, recs: list[dict], answers: dict[str, list[str]], state: dict) -> dict[str, dict]:
    """Raw RM scores per distinct (task, program), cached per RM; the scorer is loaded once, if needed."""
    path = os.path.join(args.output_dir, name, f"rm-{_tag(fingerprint(args.rm), args.rm_max_length)}.jsonl")
    with AppendWriter(path) as out:
        todo = {}
        for rec in recs:
            for answer in answers[rec["id"]][1:]:  # the greedy answer needs no score
                program = rm_program(rec, answer)
                key = _key(rec["id"], program)
                if program.strip() and key not in out:
                    todo[key] = (rec["question"], program)
        if todo and "scorer" not in state:
            from rewards.rm_scorer import RMScorer
            state["scorer"] = RMScorer(args.rm, device=args.rm_device, batch_size=args.rm_batch_size,
                                       max_length=args.rm_max_length, normalize=None, clip=None)
        keys = list(todo)
        for s in range(0, len(keys), 512):
            block = keys[s:s + 512]
            for key, v in zip(block, state["scorer"].raw_scores([todo[k] for k in block])):
                out.write({"id": key, "score": v if math.isfinite(v) else None})
    return _read(path)


# ----------------------------------------------------------------------------- the run
def check_config(args) -> None:
    path = os.path.join(args.output_dir, "eval_config.json")
    prompt_file = args.prompt or "solve.txt (default)"
    now = {"model": args.model, "model_files": fingerprint(args.model), "temperature": args.temperature,
           "top_p": args.top_p, "max_new_tokens": args.max_new_tokens, "seed": args.seed, "prompt": prompt_file,
           "prompt_tests": args.prompt_tests}
    if os.path.exists(path):
        old = json.load(open(path, encoding="utf-8"))
        for k in GEN_KEYS:
            if old.get(k) != now[k]:
                opt = "--model (its files changed)" if k == "model_files" else f"--{k}"
                raise SystemExit(f"{opt}: {now[k]!r} here, but the samples cached in {args.output_dir} were made with "
                                 f"{old.get(k)!r}; use another --output_dir or the same value")
    else:
        atomic_write_text(path, json.dumps(now, indent=2))


def run(args) -> dict:
    t0 = time.time()
    os.makedirs(args.output_dir, exist_ok=True)
    check_config(args)
    benches = dict(load_tasks(spec, args) for spec in args.benchmarks.split(",") if spec.strip())
    isolate = args.isolate_generation == "on" or (args.isolate_generation == "auto" and args.engine == "vllm")
    if isolate and args.phase == "all":
        cmd = [sys.executable, "-m", "apps.bon_eval", *args.argv, "--engine", args.engine, "--phase", "generate"]
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit("bon_eval: generation failed (see above); re-run to continue from the cached samples")
    else:
        generate(args, benches)
    if args.phase == "generate":
        return {}
    from sandbox import SandboxPool

    results, state = {}, {}
    with SandboxPool(args.sandbox) as pool:
        for name, recs in benches.items():
            cached = _read(os.path.join(args.output_dir, name, "samples.jsonl"))
            answers = {r["id"]: [cached[r["id"]]["greedy"]] + cached[r["id"]]["samples"][:args.n[-1]] for r in recs}
            ran = execute(args, name, recs, answers, pool)
            scores = score(args, name, recs, answers, state) if args.rm else None
            rows = []
            for rec in recs:
                res = [ran.get(_key(rec["id"], exec_program(rec, a))) for a in answers[rec["id"]]]
                row = {"id": rec["id"], "greedy_pass": bool(res[0] and res[0]["all_passed"]),
                       "passes": [bool(r and r["all_passed"]) for r in res[1:]],
                       "pass_rates": [r["pass_rate"] if r else 0.0 for r in res[1:]]}
                if scores is not None:
                    row["scores"] = [(scores.get(_key(rec["id"], rm_program(rec, a))) or {}).get("score")
                                     for a in answers[rec["id"]][1:]]
                    row["rm_pick"] = {str(n): select_best(row["scores"][:n]) for n in args.n}
                rows.append(row)
            write_records(os.path.join(args.output_dir, name, "per_task.jsonl"), rows)
            results[name] = summarize([r["greedy_pass"] for r in rows], [r["passes"] for r in rows],
                                      [r["scores"] for r in rows] if scores is not None else None, args.n)
    report = {"config": {k: getattr(args, k) for k in ("model", "rm", "engine", "n", "temperature", "top_p",
                                                       "max_new_tokens", "seed")},
              "benchmarks": results, "seconds": round(time.time() - t0, 1)}
    atomic_write_text(os.path.join(args.output_dir, "results.json"), json.dumps(report, indent=2))
    print(format_table(results), flush=True)
    return report


def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
