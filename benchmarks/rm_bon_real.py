"""A Bradley-Terry reward model on SmolLM2-135M-Instruct's own answers, judged on held-out real problems.

    python benchmarks/rm_bon_real.py [--output_dir outputs/rm_bon_real] [--n 8] [--train_limit K] [--heldout_limit K]

1. Tasks in the AceCode schema (``data_prep.task_prompts``): training problems are MBPP's train,
   validation and prompt splits (ids 1-10, 511-974); held-out problems are MBPP's test split (11-510),
   plus HumanEval+ with ``--heldout_sets mbpp,humanevalplus`` (its ~1,000 plus tests per task make
   scoring every sample slow here).
2. ``--n`` answers per task from SmolLM2 at temperature 1 (``apps.bon_eval --phase generate``: vLLM,
   its solver prompt, cached and resumable).
3. Pass rates in the sandbox with ``python -m data_prep score``. Unless ``--no_reference``, the
   dataset's reference solution joins each question's answer pool as one more answer (model_name
   ``reference``; the summary says so): SmolLM2 rarely writes a fully passing answer, and the pair
   rule needs one.
4. Preference pairs with ``python -m data_prep pairs`` (the paper's rule: hi >= 0.8, hi - lo >= 0.4,
   lo > 0), for the training and, separately, the held-out problems.
5. ``python -m apps.train_rm`` on the training pairs, from the SmolLM2 backbone.
6. On the held-out problems: pairwise accuracy on the held-out pairs (a 95% bootstrap interval that
   resamples questions), and best-of-N pass@1 (``apps.bon_eval --rm``, model samples only, the
   reference never among them): RM-selected vs the average sample vs the oracle (any sample passes),
   with 95% bootstrap intervals over tasks, and the paired interval of RM - average.

Writes OUTPUT_DIR/summary.json (``"rm_best_of_n": {"pairwise_accuracy", "rm", "average", "oracle",
"n", ...}``) and prints a table. Every stage is cached under OUTPUT_DIR, so a killed run continues;
the RM is retrained when its pairs changed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.io import atomic_write_text, iter_records, write_records  # noqa: E402

MODEL = "smollm2-135m-instruct"


def log(msg: str) -> None:
    print(f"[rm_bon_real] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], threads: int) -> None:
    log(" ".join(cmd[1:]))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def write_tasks(out: Path, args) -> dict[str, Path]:
    """train.jsonl and heldout.jsonl (the fixed prompt records, with each task's reference solution)."""
    from data_prep.benchmarks import load_benchmark
    from data_prep.task_prompts import build_splits

    sets = tuple(s.strip() for s in args.heldout_sets.split(",") if s.strip())
    train, held = build_splits(args.data_dir, sets)
    reference = {r.id: r.canonical_solution for name in ("mbpp", *sets) for r in load_benchmark(name, args.data_dir)}
    held_recs = [r for recs in held.values() for r in (recs[:args.heldout_limit] if args.heldout_limit else recs)]
    paths = {}
    for split, recs in (("train", train[:args.train_limit] if args.train_limit else train), ("heldout", held_recs)):
        paths[split] = out / f"{split}_tasks.jsonl"
        write_records(paths[split], [{**r, "canonical_solution": reference.get(r["id"]) or ""} for r in recs])
    return paths


def bon_eval_args(args, split: str, tasks: Path, model: str) -> list[str]:
    return [sys.executable, "-m", "apps.bon_eval", "--model", model, "--benchmarks", f"{split}={tasks}",
            "--n_list", str(args.n), "--output_dir", str(args.output_dir / "samples"), "--engine", "vllm",
            "--engine_kwargs", json.dumps({"enforce_eager": True, "max_model_len": 2048, "dtype": "float32"}),
            "--max_new_tokens", str(args.max_new_tokens), "--temperature", "1.0", "--seed", str(args.seed),
            "--sandbox_workers", str(args.workers)]


def answer_records(args, split: str, tasks: Path) -> Path:
    """The tasks with their sampled answers as ``inferences`` (+ the reference), for ``data_prep score``."""
    samples = {r["id"]: r for _, r in iter_records(args.output_dir / "samples" / split / "samples.jsonl")}
    recs = []
    for _, task in iter_records(tasks):
        inf = [{"model_name": MODEL, "completion_id": k, "completion": a}
               for k, a in enumerate(samples[task["id"]]["samples"][:args.n])]
        if args.reference and task.get("canonical_solution"):
            inf.append({"model_name": "reference", "completion_id": len(inf),
                        "completion": f"```python\n{task['canonical_solution']}\n```"})
        recs.append({k: v for k, v in task.items() if k != "canonical_solution"} | {"inferences": inf})
    path = args.output_dir / f"{split}_answers.jsonl"
    write_records(path, recs)
    return path


def score_and_pair(args, split: str, answers: Path) -> tuple[Path, Path]:
    """``data_prep score`` (resumes by id) then ``data_prep pairs`` (rebuilt); (scored, pairs export)."""
    tag = f"n{args.n}_ref{int(args.reference)}"
    scored, pairs = args.output_dir / f"{split}_scored_{tag}.jsonl", args.output_dir / f"{split}_pairs_{tag}.jsonl"
    run([sys.executable, "-m", "data_prep", "score", "--input", str(answers), "--output", str(scored),
         "--sandbox_workers", str(args.workers), "--progress_bar", "false"], args.threads)
    for stale in (pairs, pairs.with_suffix(".rm.jsonl")):
        stale.unlink(missing_ok=True)
    run([sys.executable, "-m", "data_prep", "pairs", "--input", str(scored), "--output", str(pairs)], args.threads)
    return scored, pairs


def bootstrap(values: np.ndarray, groups: np.ndarray | None = None, reps: int = 10_000, seed: int = 0
              ) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling ``groups`` (default: each value) with replacement."""
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if groups is None:
        means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    else:
        ids = np.unique(groups)
        members = [np.flatnonzero(groups == g) for g in ids]
        sums = np.array([values[m].sum() for m in members])
        counts = np.array([len(m) for m in members])
        pick = rng.integers(0, len(ids), size=(reps, len(ids)))
        means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def pairwise_accuracy(rm_dir: Path, pairs_path: Path, max_length: int) -> dict:
    """Share of held-out pairs the RM orders right (a tie counts as wrong), and its interval."""
    from rewards.rm_scorer import RMScorer

    pairs = [r for _, r in iter_records(pairs_path)]
    if not pairs:
        return {"pairwise_accuracy": float("nan"), "pairwise_ci95": [float("nan")] * 2, "heldout_pairs": 0}
    scorer = RMScorer(str(rm_dir), device="cpu", batch_size=8, max_length=max_length, clip=None)
    chosen = scorer.raw_scores([(p["question"], p["chosen"]) for p in pairs])
    rejected = scorer.raw_scores([(p["question"], p["rejected"]) for p in pairs])
    right = np.array([float(c > r) for c, r in zip(chosen, rejected)])
    questions = np.array([p["record_id"] for p in pairs])
    return {"pairwise_accuracy": float(right.mean()), "pairwise_ci95": list(bootstrap(right, questions)),
            "heldout_pairs": len(pairs), "heldout_pair_questions": int(len(np.unique(questions)))}


def best_of_n(args, split: str) -> dict:
    """RM / average / oracle over the held-out tasks from apps.bon_eval's per-task rows."""
    from rewards.bon import select_best

    rows = [r for _, r in iter_records(args.output_dir / "samples" / split / "per_task.jsonl")]
    passes = np.array([[float(x) for x in r["passes"][:args.n]] for r in rows])
    rm = np.array([passes[i][select_best(r["scores"][:args.n])] for i, r in enumerate(rows)])
    avg, oracle = passes.mean(axis=1), passes.max(axis=1)
    return {"n": args.n, "tasks": len(rows), "rm": float(rm.mean()), "rm_ci95": list(bootstrap(rm)),
            "average": float(avg.mean()), "average_ci95": list(bootstrap(avg)),
            "oracle": float(oracle.mean()), "oracle_ci95": list(bootstrap(oracle)),
            "rm_minus_average_ci95": list(bootstrap(rm - avg)),
            "greedy": float(np.mean([r["greedy_pass"] for r in rows]))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--output_dir", type=Path, default=Path("outputs/rm_bon_real"))
    ap.add_argument("--data_dir", default=None, help="benchmark files (default: $ACECODER_DATA_DIR or ../shared/data)")
    ap.add_argument("--heldout_sets", default="mbpp", help="comma list: mbpp (its test split), humanevalplus")
    ap.add_argument("--train_limit", type=int, default=0, help="first K training problems (0: all 474)")
    ap.add_argument("--heldout_limit", type=int, default=0, help="first K tasks of each held-out set (0: all)")
    ap.add_argument("--n", type=int, default=8, help="samples per problem; best-of-N on the held-out problems")
    ap.add_argument("--max_new_tokens", type=int, default=192, help="per answer (as the RL demo)")
    ap.add_argument("--no_reference", dest="reference", action="store_false",
                    help="keep the dataset's reference solution out of the answer pools")
    ap.add_argument("--rm_epochs", type=int, default=2)
    ap.add_argument("--rm_lr", type=float, default=1e-5)
    ap.add_argument("--rm_batch", type=int, default=16, help="pairs per RM optimizer step")
    ap.add_argument("--rm_max_len", type=int, default=768, help="RM tokens per (question, program)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="sandbox workers")
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of each stage")
    args = ap.parse_args(argv)
    out = args.output_dir = args.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0, seconds = time.time(), {}
    from trainer.models import prepare

    model = str(prepare(MODEL))
    tasks = write_tasks(out, args)
    scored, pairs = {}, {}
    for split in ("train", "heldout"):
        t = time.time()
        run(bon_eval_args(args, split, tasks[split], model) + ["--phase", "generate"], args.threads)
        scored[split], pairs[split] = score_and_pair(args, split, answer_records(args, split, tasks[split]))
        seconds[f"{split}_sample_score_s"] = round(time.time() - t, 1)
    export = {s: p.with_suffix(".rm.jsonl") for s, p in pairs.items()}
    n_pairs = {s: sum(1 for _ in iter_records(p)) for s, p in export.items()}
    log(f"pairs: {n_pairs['train']} training, {n_pairs['heldout']} held-out")
    if not n_pairs["train"]:
        raise SystemExit("no training pairs: the pair rule found no (hi >= 0.8, lo > 0) answers; raise --n")

    t = time.time()
    rm_dir = out / "rm"
    stamp = {"pairs": export["train"].read_text(), "epochs": args.rm_epochs, "lr": args.rm_lr, "seed": args.seed}
    done_marker = rm_dir / "trained_on.json"
    if not (done_marker.exists() and json.loads(done_marker.read_text()) == stamp):
        batch = min(args.rm_batch, n_pairs["train"])  # a small pool (a quick run) is one batch
        cmd = [sys.executable, "-m", "apps.train_rm", "--pretrain", model, "--dataset", str(export["train"]),
               "--save_path", str(rm_dir), "--zero_stage", "2", "--train_batch_size", str(batch),
               "--micro_train_batch_size", str(min(4, batch)), "--max_len", str(args.rm_max_len),
               "--learning_rate", str(args.rm_lr),
               "--max_epochs", str(args.rm_epochs), "--lr_warmup_ratio", "0.1", "--use_tensorboard", "none",
               "--seed", str(args.seed)]
        if n_pairs["heldout"]:
            cmd += ["--eval_dataset", str(export["heldout"])]
        run(cmd, args.threads)
        atomic_write_text(str(done_marker), json.dumps(stamp))
    seconds["train_rm_s"] = round(time.time() - t, 1)

    t = time.time()
    result = pairwise_accuracy(rm_dir / "final", pairs["heldout"], args.rm_max_len)
    run(bon_eval_args(args, "heldout", tasks["heldout"], model) + ["--rm", str(rm_dir / "final"),
                                                                    "--rm_max_length", str(args.rm_max_len),
                                                                    "--rm_device", "cpu"], args.threads)
    result.update(best_of_n(args, "heldout"))
    result.update(train_pairs=n_pairs["train"], reference_in_pool=args.reference)
    seconds["evaluate_s"] = round(time.time() - t, 1)
    seconds["total_s"] = round(time.time() - t0, 1)
    summary = {"model": MODEL, "rm_best_of_n": result, "seconds": seconds,
               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    atomic_write_text(str(out / "summary.json"), json.dumps(summary, indent=2) + "\n")
    r = result
    pool = "reference solution in each answer pool" if args.reference else "model answers only"
    print(f"\nRM best-of-{args.n} on held-out problems ({r['tasks']} tasks; RM trained on {r['train_pairs']} pairs, "
          f"{pool})\n"
          f"held-out pairwise accuracy {r['pairwise_accuracy']:.3f} [{r['pairwise_ci95'][0]:.3f}, "
          f"{r['pairwise_ci95'][1]:.3f}] on {r['heldout_pairs']} pairs\n"
          f"{'':12}{'pass@1':>8}{'95% CI':>18}\n"
          + "".join(f"{k:12}{r[k]:8.3f}   [{r[k + '_ci95'][0]:.3f}, {r[k + '_ci95'][1]:.3f}]\n"
                    for k in ("rm", "average", "oracle"))
          + f"RM - average {r['rm'] - r['average']:+.3f} [{r['rm_minus_average_ci95'][0]:+.3f}, "
            f"{r['rm_minus_average_ci95'][1]:+.3f}]; greedy {r['greedy']:.3f}; {seconds['total_s']:.0f} s",
          flush=True)
    return summary


if __name__ == "__main__":
    main()
