"""Sync vs async (one-step-off-policy) training on the CPU demo, in one run of this script.

    python benchmarks/async_demo.py                         # arms: sync, async, async, sync
    python benchmarks/async_demo.py --order sync,async      # quicker

Every arm is the demo's RL run (launch/configs/demo_cpu.yaml, the same warm-start model, data and
seed) from step 0 until the held-out greedy pass rate reaches the demo's target or --max_steps;
the async arms add --async_train. The arms run back to back in the listed order (the default
interleaves them, so a change in the machine's load hits both) and the load average is printed
beside each. Printed: per arm, the mean and median of timing/step (wall time between consecutive step
completions, evaluations and checkpoints excluded) over steps 4-16, the step at which the target
was reached, the ratio async / sync over all arms of each mode, and that of each pair of neighbouring
arms (the most similar load). Checks: ratio <= 0.75 and every
async arm reaches the target. Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST, LAST = 4, 16  # steps timed (the first steps include actor warm-up)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_arm(out: Path, model_dir: Path, train: Path, held: Path, mode: str, max_steps: int, target: float,
            extra: list[str]) -> dict:
    from trainer import demo
    from trainer.config import load_config
    from trainer.controller import Trainer

    args = demo.rl_args(out, model_dir, train, held, max_steps, target) + [
        "--progress_bar", "false", "--use_tensorboard", "false", "--save_hf_model", "false", "--resume", "none",
        *(["--async_train"] if mode == "async" else []), *extra]
    load_before, t0 = load(), time.time()
    trainer = Trainer(load_config(args))
    try:
        history = trainer.fit()
    finally:
        trainer.close()
    steps = {h["step"]: h for h in history if "timing/step" in h}
    timed = [steps[s]["timing/step"] for s in range(FIRST, LAST + 1) if s in steps]
    evals = [(h["step"], h["eval/pass_rate"]) for h in history if "eval/pass_rate" in h]
    reached = next((s for s, p in evals if p >= target), None)
    return {"mode": mode, "timed": timed, "mean": statistics.fmean(timed), "median": statistics.median(timed),
            "reached_at": reached, "final_eval": evals[-1][1], "steps": max(steps),
            "staleness": statistics.fmean(h.get("staleness", 0) for h in steps.values()),
            "wall_s": time.time() - t0, "load_before": load_before, "load_after": load()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output_dir", default="/tmp/acecoder_async_demo")
    ap.add_argument("--order", default="sync,async,async,sync", help="arms in the order they run")
    ap.add_argument("--max_steps", type=int, default=60)
    ap.add_argument("--target", type=float, default=0.9, help="the demo's held-out greedy pass-rate target")
    ap.add_argument("--max_ratio", type=float, default=0.75)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("extra", nargs="*", help="more trainer options for every arm, after --")
    args = ap.parse_args(argv)
    from trainer import demo

    out = Path(args.output_dir)
    train, held = demo.write_data(out / "data", args.seed)
    model_dir = out / "warm_start"
    if not (model_dir / "config.json").exists():
        demo.warm_start(model_dir, args.seed, 0.2, 300, lambda m: print(m, file=sys.stderr, flush=True))
    arms = []
    for i, mode in enumerate(args.order.split(",")):
        arm = run_arm(out / f"arm{i}_{mode}", model_dir, train, held, mode, args.max_steps, args.target, args.extra)
        arms.append(arm)
        print(json.dumps({k: v for k, v in arm.items() if k != "timed"}), file=sys.stderr, flush=True)

    print(f"\nCPU demo, sync vs --async_train; timing/step over steps {FIRST}-{LAST}")
    print(f"{'arm':<10}{'mean s':>8}{'median s':>10}{'target at':>11}{'final eval':>12}{'staleness':>11}"
          f"{'wall s':>8}   load before -> after")
    for i, a in enumerate(arms):
        print(f"{i}:{a['mode']:<8}{a['mean']:8.3f}{a['median']:10.3f}{str(a['reached_at']):>11}"
              f"{a['final_eval']:12.3f}{a['staleness']:11.2f}{a['wall_s']:8.0f}   "
              f"{a['load_before']} -> {a['load_after']}")
    by = {m: [t for a in arms if a["mode"] == m for t in a["timed"]] for m in ("sync", "async")}
    ok = True
    if by["sync"] and by["async"]:
        ratio = statistics.fmean(by["async"]) / statistics.fmean(by["sync"])
        ratio_med = statistics.median(by["async"]) / statistics.median(by["sync"])
        print(f"async / sync step time: {ratio:.3f} (means), {ratio_med:.3f} (medians); "
              f"target <= {args.max_ratio}: {'met' if ratio <= args.max_ratio else 'NOT met'}")
        ok = ratio <= args.max_ratio
        # neighbouring arms of different modes ran under the most similar load: their ratios show
        # how much of the pooled figure is the machine's load changing between arms
        pairs = [(a, b) for a, b in zip(arms, arms[1:]) if {a["mode"], b["mode"]} == {"sync", "async"}]
        for first, second in pairs:
            sync_arm, async_arm = (first, second) if first["mode"] == "sync" else (second, first)
            print(f"  arms {arms.index(first)},{arms.index(second)}: async / sync "
                  f"{async_arm['mean'] / sync_arm['mean']:.3f} (means)")
    for a in arms:
        if a["mode"] == "async" and a["reached_at"] is None:
            print(f"async arm did not reach the held-out target {args.target} in {args.max_steps} steps")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
