"""The CPU demo: a run that learns, end to end, on a 2-core machine with no GPU and no downloads.

1. A synthetic family of tiny Python functions: ``# return the <sum|difference|product|max|min|
   distance> of u and v`` in a function whose name and parameter order vary; the answer is one
   expression; 3 asserts with random small integers. Held-out prompts are (operation, signature)
   pairs never seen in training.
2. A tiny Qwen2 (2 layers, hidden 128) with a byte-level tokenizer trained here, warm-started by a
   short supervised pass on a deliberately flawed mixture: for 4 of the 6 operations the label is a
   fixed wrong operation, except with probability ``p``. The model then samples the right answer
   sometimes, but greedy decoding gets those operations wrong.
3. Reinforce++ through the real stack (Ray actors, DeepSpeed policy on gloo, the transformers
   rollout engine, rule rewards from the bwrap sandbox) until the held-out greedy pass rate reaches
   the target or MAX_STEPS.

    python -m trainer.demo --output_dir outputs/demo_cpu [--max_steps 60]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import torch

OPS = {"sum": "{u} + {v}", "difference": "{u} - {v}", "product": "{u} * {v}",
       "max": "max({u}, {v})", "min": "min({u}, {v})", "distance": "abs({u} - {v})"}
FLAWED = {"sum": "difference", "max": "min", "product": "sum", "distance": "difference"}  # wrong labels
# A signature is a function name and the order of its parameters u and v: the answer for an
# operation never changes, but what the tests expect does (f(v, u) binds the arguments the other way).
SIGNATURES = [(fn, a, b) for fn in ("f", "g", "calc", "solve") for a, b in (("u", "v"), ("v", "u"))]


def prompt_text(op: str, sig: tuple[str, str, str]) -> str:
    fn, first, second = sig
    return f"def {fn}({first}, {second}):\n    # return the {op} of u and v\n    return "


def answer(op: str, sig: tuple[str, str, str]) -> str:
    return OPS[op].format(u="u", v="v")


def value(op: str, a: int, b: int) -> int:
    return {"sum": a + b, "difference": a - b, "product": a * b, "max": max(a, b), "min": min(a, b),
            "distance": abs(a - b)}[op]


def make_record(op: str, sig: tuple[str, str, str], rng: random.Random, idx: int) -> dict:
    fn, first, _ = sig
    tests = []
    for _ in range(3):
        a, b = rng.randint(-9, 9), rng.randint(-9, 9)
        u, v = (a, b) if first == "u" else (b, a)
        tests.append(f"assert {fn}({a}, {b}) == {value(op, u, v)}")
    p = prompt_text(op, sig)
    return {"id": f"demo_{idx}", "source": "demo", "question": p, "program_prefix": p, "test_cases": tests,
            "op": op}


def split_tasks(seed: int) -> tuple[list, list]:
    """Every (op, signature) pair; a fixed share of pairs is held out entirely."""
    pairs = [(op, sig) for op in OPS for sig in SIGNATURES]
    rng = random.Random(seed)
    rng.shuffle(pairs)
    held = pairs[: len(pairs) // 4]
    return pairs[len(pairs) // 4:], held


def write_data(out: Path, seed: int, n_train: int = 512, n_eval: int = 48) -> tuple[Path, Path]:
    train_pairs, held_pairs = split_tasks(seed)
    rng = random.Random(seed + 1)
    out.mkdir(parents=True, exist_ok=True)
    train = [make_record(*rng.choice(train_pairs), rng, i) for i in range(n_train)]
    held = [make_record(*held_pairs[i % len(held_pairs)], rng, 100_000 + i) for i in range(n_eval)]
    for name, recs in (("train.jsonl", train), ("heldout.jsonl", held)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out / "train.jsonl", out / "heldout.jsonl"


# ----------------------------------------------------------------------------- warm start
def warm_start(model_dir: Path, seed: int, p_correct: float, steps: int, log=print) -> None:
    """A tiny Qwen2 + byte-level tokenizer, trained briefly on the flawed mixture."""
    from .tiny import build_tiny_qwen2, build_tokenizer

    train_pairs, _ = split_tasks(seed)
    corpus = [prompt_text(op, sig) + answer(op, sig) for op, sig in train_pairs]
    tok = build_tokenizer(str(model_dir), corpus=corpus, vocab_size=260)  # bytes only: no merges
    model = build_tiny_qwen2(str(model_dir), tok, seed=seed, hidden=128, layers=2, heads=4, kv_heads=2,
                             max_positions=128)
    rng = random.Random(seed + 2)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    eos = tok.eos_token_id
    model.train()
    t0 = time.time()
    for step in range(steps):
        batch_ids, batch_labels = [], []
        for _ in range(64):
            op, sig = rng.choice(train_pairs)
            label_op = FLAWED[op] if (op in FLAWED and rng.random() > p_correct) else op
            p_ids = tok(prompt_text(op, sig))["input_ids"]
            a_ids = tok(answer(label_op, sig))["input_ids"] + [eos]
            batch_ids.append(p_ids + a_ids)
            batch_labels.append([-100] * len(p_ids) + a_ids)
        width = max(map(len, batch_ids))
        ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in batch_ids])
        labels = torch.tensor([y + [-100] * (width - len(y)) for y in batch_labels])
        att = (torch.arange(width)[None] < torch.tensor([len(x) for x in batch_ids])[:, None]).long()
        loss = model(input_ids=ids, attention_mask=att, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            log(f"[warm-start] step {step:4d} loss {loss.item():.3f} ({time.time() - t0:.0f} s)")
    model.save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))


# ----------------------------------------------------------------------------- the run
def rl_args(out: Path, model_dir: Path, train: Path, held: Path, max_steps: int, target: float) -> list[str]:
    return ["--config", str(Path(__file__).resolve().parents[1] / "launch" / "configs" / "demo_cpu.yaml"),
            "--pretrain", str(model_dir), "--prompt_data", str(train), "--eval_data", str(held),
            "--save_path", str(out / "rl"), "--max_steps", str(max_steps), "--stop_at_eval_pass_rate", str(target)]


def plot(history: list[dict], path: Path, title: str = "Reinforce++ on the CPU demo task") -> None:
    """Sampled train reward and held-out greedy pass rate against RL steps (also used by demo_real)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style, label in (("reward_mean", "-", "sampled reward (train)"),
                              ("eval/pass_rate", "o-", "greedy pass rate (held-out)")):
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("RL step")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="CPU demo: warm start, then Reinforce++ with sandbox rewards")
    ap.add_argument("--output_dir", default=os.environ.get("OUTPUT_DIR", "outputs/demo_cpu"))
    ap.add_argument("--max_steps", type=int, default=int(os.environ.get("MAX_STEPS", "60")))
    ap.add_argument("--target", type=float, default=0.9, help="stop once held-out greedy pass rate reaches this")
    ap.add_argument("--p_correct", type=float, default=0.2, help="warm start: chance a flawed label is right")
    ap.add_argument("--warm_steps", type=int, default=int(os.environ.get("WARM_STEPS", "300")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("extra", nargs="*", help="more trainer options, after --")
    args = ap.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.time()
    train, held = write_data(out / "data", args.seed)
    model_dir = out / "warm_start"

    from .config import load_config
    from .controller import Trainer
    from .threads import size_threads, threads_for

    cfg = load_config(rl_args(out, model_dir, train, held, args.max_steps, args.target) + args.extra)
    log(f"[demo] torch threads in the driver: {size_threads(threads_for(cfg.train.num_threads, None))}")
    if not (model_dir / "config.json").exists():
        warm_start(model_dir, args.seed, args.p_correct, args.warm_steps, log)
    else:
        log(f"[demo] reusing the warm-start model in {model_dir}")
    trainer = Trainer(cfg)
    try:
        history = trainer.fit()
    finally:
        trainer.close()
    evals = [h for h in history if "eval/pass_rate" in h]
    before, after = evals[0]["eval/pass_rate"], evals[-1]["eval/pass_rate"]
    rewards = [h["reward_mean"] for h in history if "reward_mean" in h]
    plot(history, out / "reward.png")
    table = [
        "", "CPU demo: held-out greedy pass rate and sampled reward",
        f"{'':28}{'before RL':>12}{'after RL':>12}",
        f"{'held-out greedy pass rate':28}{before:12.3f}{after:12.3f}",
        f"{'sampled reward (train)':28}{rewards[0]:12.3f}{rewards[-1]:12.3f}",
        f"RL steps: {evals[-1]['step']}   total time: {time.time() - t0:.0f} s   plot: {out / 'reward.png'}",
    ]
    print("\n".join(table), flush=True)
    (out / "summary.json").write_text(json.dumps({"before": before, "after": after, "steps": evals[-1]["step"],
                                                  "seconds": time.time() - t0}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
