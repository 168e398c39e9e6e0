"""A reward model trained on the policy's own samples picks better answers: the whole RM loop on 2 CPU cores.

On the CPU demo's task family (trainer/demo.py: ``# return the <op> of u and v``, completion style):

1. warm-start the demo policy (the flawed supervised mixture; no RL), or reuse it;
2. sample N answers per training task at temperature 1 with the transformers engine and run them in
   the sandbox (both through ``apps.bon_eval``), giving AceCode records with scored ``inferences``;
3. build preference pairs with ``python -m data_prep pairs`` (the AceCoder rule, data_prep/pairs.py: hi >= 0.8,
   hi - lo >= 0.4, lo > 0, no duplicate program pairs), for training tasks and, separately, held-out tasks;
4. train a tiny Bradley-Terry RM with ``python -m apps.train_rm``: by default a freshly initialised
   tiny Qwen2 of the policy's shape and tokenizer (``--rm_init policy`` starts from the warm-start
   policy instead: it inherits the policy's flawed operation features, e.g. "sum" and "difference"
   both lead to ``u - v``, and on some seeds it stayed near chance on held-out pairs for 600 steps,
   where a fresh model learned the operation/expression binding in 200-350 steps on every seed tried);
5. measure held-out pairwise accuracy, then best-of-N on held-out tasks (unseen operation/signature
   combinations): RM-selected pass rate against the average sample's pass rate and the oracle.

Task settings differ from the RL demo in one respect: each task has 6 tests, 3 with arguments in
[-9, 9] and 3 in [-2, 2]. The pair rule needs rejected answers that pass SOME tests (lo > 0); with only
wide-range arguments a wrong operation almost never does, and there would be almost no pairs.

    python benchmarks/rm_bon_cpu.py [--output_dir outputs/rm_bon_cpu] [--n 8]

Prints the numbers and writes OUTPUT_DIR/summary.json. Re-running reuses the warm start and the
cached samples (apps.bon_eval resumes), and retrains the RM.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps import bon_eval  # noqa: E402
from common.io import iter_records, write_records  # noqa: E402
from trainer.demo import prompt_text, split_tasks, value, warm_start  # noqa: E402

def make_record(op: str, sig: tuple[str, str, str], rng: random.Random, idx: int) -> dict:
    fn, first, _ = sig
    tests = []
    for lo, hi in ((-9, 9),) * 3 + ((-2, 2),) * 3:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        u, v = (a, b) if first == "u" else (b, a)
        tests.append(f"assert {fn}({a}, {b}) == {value(op, u, v)}")
    p = prompt_text(op, sig)
    return {"id": f"rmbon_{idx}", "source": "demo", "question": p, "program_prefix": p, "test_cases": tests, "op": op}


def write_tasks(out: Path, seed: int, per_train: int, per_heldout: int) -> tuple[Path, Path]:
    train_combos, held_combos = split_tasks(seed)  # the same held-out combinations as the RL demo
    rng = random.Random(seed + 7)
    train = [make_record(op, sig, rng, i) for i, (op, sig) in enumerate(train_combos * per_train)]
    held = [make_record(op, sig, rng, 100_000 + i) for i, (op, sig) in enumerate(held_combos * per_heldout)]
    write_records(out / "train_tasks.jsonl", train)
    write_records(out / "heldout_tasks.jsonl", held)
    return out / "train_tasks.jsonl", out / "heldout_tasks.jsonl"


def sample_and_score(name: str, tasks: Path, n_list: list[int], args, eval_dir: Path,
                     rm: str = "") -> tuple[dict, list[dict]]:
    """apps.bon_eval on a task file; returns its report and AceCode records with scored inferences."""
    report = bon_eval.main(["--model", str(args.output_dir / "policy"), "--rm", rm, "--benchmarks", f"{name}={tasks}",
                            "--n_list", ",".join(map(str, n_list)), "--output_dir", str(eval_dir),
                            "--engine", "hf", "--max_new_tokens", "12", "--seed", str(args.seed),
                            "--sandbox_workers", "2", "--sandbox_timeout_s", "2"])
    samples = {r["id"]: r for _, r in iter_records(eval_dir / name / "samples.jsonl")}
    scored = [row for _, row in iter_records(eval_dir / name / "per_task.jsonl")]
    tasks_by_id = {r["id"]: r for _, r in iter_records(tasks)}
    records = []
    for row in scored:
        rec = tasks_by_id[row["id"]]
        answers = samples[row["id"]]["samples"][:n_list[-1]]
        rec["inferences"] = [{"model_name": "demo_policy", "completion_id": k, "completion": rec["program_prefix"] + a,
                              "pass_rate": pr} for k, (a, pr) in enumerate(zip(answers, row["pass_rates"]))]
        records.append(rec)
    return report, records


def data_prep_pairs(records: list[dict], name: str, out: Path) -> tuple[int, Path]:
    """``python -m data_prep pairs`` on scored records; returns the pair count and its RM export."""
    scored, pairs = out / f"{name}_scored.jsonl", out / f"{name}_pairs.jsonl"
    write_records(scored, records)
    for stale in (pairs, pairs.with_suffix(".rm.jsonl")):  # pairs resume by id; samples may have changed
        stale.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "data_prep", "pairs", "--input", str(scored), "--output", str(pairs)],
                   check=True, cwd=ROOT)
    export = pairs.with_suffix(".rm.jsonl")
    return sum(1 for _ in iter_records(export)), export


def heldout_accuracy(rm_dir: str, pairs_path: Path) -> float:
    from rewards.rm_scorer import RMScorer

    pairs = [r for _, r in iter_records(pairs_path)]
    scorer = RMScorer(rm_dir, device="cpu", batch_size=64, max_length=256, clip=None)
    chosen = scorer.raw_scores([(p["prompt"], p["chosen"]) for p in pairs])
    rejected = scorer.raw_scores([(p["prompt"], p["rejected"]) for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output_dir", type=Path, default=Path("outputs/rm_bon_cpu"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p_correct", type=float, default=0.2, help="warm start: chance a flawed label is right")
    ap.add_argument("--warm_steps", type=int, default=100, help="warm-start supervised steps")
    ap.add_argument("--train_per_combo", type=int, default=16, help="training tasks per (operation, signature)")
    ap.add_argument("--heldout_per_combo", type=int, default=8, help="held-out tasks per held-out combination")
    ap.add_argument("--samples_per_task", type=int, default=16, help="samples per training task (pass rates, pairs)")
    ap.add_argument("--n_list", default="2,4,8", help="best-of-N on the held-out tasks")
    ap.add_argument("--rm_steps", type=int, default=400, help="RM optimizer steps (rounded to whole epochs)")
    ap.add_argument("--rm_lr", type=float, default=1e-3)
    ap.add_argument("--rm_init", choices=["fresh", "policy"], default="fresh", help="RM backbone initialisation")
    ap.add_argument("--rm_batch", type=int, default=16, help="pairs per RM optimizer step")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; on a shared 2-core machine 2 threads ran ~10x slower than 1")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.n_list = sorted(int(x) for x in args.n_list.split(","))
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(f"[rm_bon_cpu] {m}", file=sys.stderr, flush=True)  # noqa: E731
    times, t0 = {}, time.time()

    if not (out / "policy" / "config.json").exists():
        warm_start(out / "policy", args.seed, args.p_correct, args.warm_steps, log)
    times["warm_start_s"] = time.time() - t0
    train_tasks, held_tasks = write_tasks(out, args.seed, args.train_per_combo, args.heldout_per_combo)

    t = time.time()
    # The cache of samples belongs to these task settings (task ids repeat across settings).
    samples_dir = out / (f"samples_seed{args.seed}_train{args.train_per_combo}x{args.samples_per_task}"
                         f"_held{args.heldout_per_combo}x{args.n_list[-1]}")
    _, train_recs = sample_and_score("train", train_tasks, [args.samples_per_task], args, samples_dir)
    _, held_recs = sample_and_score("heldout", held_tasks, args.n_list, args, samples_dir)
    n_train, train_pairs = data_prep_pairs(train_recs, "train", out)
    n_held, held_pairs = data_prep_pairs(held_recs, "heldout", out)
    times["sample_and_run_s"] = time.time() - t
    log(f"{n_train} training pairs from {len(train_recs)} tasks, {n_held} held-out pairs from {len(held_recs)} tasks")

    t = time.time()
    rm_dir, rm_init = out / "rm", out / "policy"
    if args.rm_init == "fresh":
        from transformers import AutoTokenizer

        from trainer.tiny import build_tiny_qwen2

        rm_init = out / "rm_init"
        build_tiny_qwen2(str(rm_init), AutoTokenizer.from_pretrained(out / "policy"), seed=args.seed, hidden=128,
                         layers=2, heads=4, kv_heads=2, max_positions=256)
    epochs = max(1, round(args.rm_steps / max(1, n_train // args.rm_batch)))
    cmd = [sys.executable, "-m", "apps.train_rm", "--pretrain", str(rm_init), "--dataset",
           str(train_pairs), "--save_path", str(rm_dir),
           "--zero_stage", "0", "--train_batch_size", str(args.rm_batch),
           "--micro_train_batch_size", str(args.rm_batch), "--max_len", "256", "--learning_rate", str(args.rm_lr),
           "--max_epochs", str(epochs), "--lr_warmup_ratio", "0.1", "--use_tensorboard", "none",
           "--seed", str(args.seed)]
    if n_held:  # logged by the trainer at each epoch's end; the script measures it again on the export
        cmd += ["--eval_dataset", str(held_pairs)]
    subprocess.run(cmd, check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    times["train_rm_s"] = time.time() - t
    metrics = [json.loads(line) for line in open(rm_dir / "metrics.jsonl")]
    acc = heldout_accuracy(str(rm_dir / "final"), held_pairs) if n_held else float("nan")

    t = time.time()
    report, _ = sample_and_score("heldout", held_tasks, args.n_list, args, samples_dir, rm=str(rm_dir / "final"))
    times["best_of_n_s"] = time.time() - t
    times["total_s"] = time.time() - t0
    held = report["benchmarks"]["heldout"]
    summary = {"pairs": {"train": n_train, "heldout": n_held}, "heldout_pair_accuracy": acc,
               "train_rm_eval_acc": next((m["eval/acc"] for m in reversed(metrics) if "eval/acc" in m), None),
               "rm_steps": next(m["step"] for m in reversed(metrics)),
               "heldout_tasks": held["tasks"], "greedy": held["greedy"], "best_of": held["best_of"],
               "seconds": {k: round(v, 1) for k, v in times.items()}, "settings": {
                   k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    n = str(args.n_list[-1])
    print(f"\nRM best-of-N on the CPU demo task family ({held['tasks']} held-out tasks, {n_train} training pairs)\n"
          f"held-out pairwise accuracy: {acc:.3f} ({n_held} pairs)\n"
          f"best-of-{n}: RM-selected {held['best_of'][n]['rm']:.3f}  "
          f"average sample {held['best_of'][n]['average']:.3f}  "
          f"oracle {held['best_of'][n]['oracle']:.3f}  (greedy {held['greedy']:.3f})\n"
          f"time: {times['total_s']:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in times.items() if k != 'total_s')})",
          flush=True)
    return summary


if __name__ == "__main__":
    main()
