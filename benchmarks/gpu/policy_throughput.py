"""Policy update and log-prob throughput of the DeepSpeed policy worker on RL-shaped batches.

Items 1 and 2 of issue 6: a batch of completions with mixed prompt and response lengths (as a
rollout returns them), then (a) the log-prob pass of the policy and of the frozen reference, and
(b) optimizer steps with the Reinforce++ loss, each as tokens/s over the real (non-pad) tokens and as
model-FLOPs utilisation against the H100's bf16 peak (training counted as 3 forward passes: the
recomputation of gradient checkpointing is not useful work). The padding share is what
``--packing_samples`` saves: run it both ways. Runs without Ray: the worker class is plain.

    python benchmarks/gpu/policy_throughput.py --shape 1.5b            # on a GPU
    python benchmarks/gpu/policy_throughput.py --shape toy --batch 4 --micro_batch 2 \
        --prompt_len 8,16 --response_len 4,24 --steps 1                 # CI, on CPU
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from shapes import (H100_BF16_PEAK, SHAPES, build_model_dir, device_and_dtype, flops_per_token, report, rl_batch,
                    timed)


def span(text: str) -> tuple[int, int]:
    lo, hi = (int(x) for x in text.split(","))
    return lo, hi


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--zero_stage", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="samples per optimizer step")
    ap.add_argument("--micro_batch", type=int, default=4, help="samples per forward/backward pass")
    ap.add_argument("--prompt_len", type=span, default=(256, 1024), help="min,max prompt tokens")
    ap.add_argument("--response_len", type=span, default=(64, 2048), help="min,max response tokens")
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps (after one warm-up step)")
    ap.add_argument("--no_gradient_checkpointing", action="store_true")
    ap.add_argument("--packing_samples", action="store_true", help="pack micro-batches (no padding compute)")
    ap.add_argument("--work_dir", type=Path, default=Path("/tmp/acecoder_gpu_bench"))
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    from common.net import free_port
    from trainer.config import RLConfig
    from trainer.policy import PolicyWorker

    device, dtype = device_and_dtype(args.device)
    model_dir = build_model_dir(args.shape, args.work_dir / args.shape, dtype)
    cfg = RLConfig()
    cfg.model.gradient_checkpointing = not args.no_gradient_checkpointing
    cfg.train.packing_samples = args.packing_samples
    cfg.train.zero_stage = args.zero_stage
    cfg.train.actor_num_gpus_per_node = 1 if device == "cuda" else 0
    cfg.train.train_batch_size, cfg.train.micro_train_batch_size = args.batch, args.micro_batch
    port = free_port()
    policy = PolicyWorker(cfg, str(model_dir), train=True, master_port=port, total_steps=args.steps + 1)
    ref = PolicyWorker(cfg, str(model_dir), train=False, master_port=port)

    exp = rl_batch(args.batch, args.prompt_len, args.response_len, SHAPES[args.shape]["vocab_size"])
    real = int(exp.attention_mask.sum())
    padded = exp.attention_mask.numel()
    actions = float(exp.action_mask.sum())
    per_token = flops_per_token(args.shape, context=real / len(exp) / 2)
    rows = []

    def row(name: str, seconds: float, passes: int) -> dict:
        r = {"phase": name, "seconds": seconds, "real tokens/s": real / seconds, "padding %": 100 * (1 - real / padded)}
        r["MFU %"] = 100 * passes * per_token * real / seconds / H100_BF16_PEAK if device == "cuda" else None
        rows.append(r)
        return r

    exp.old_log_probs = policy.compute_log_probs(exp, 1.0)  # warm-up (kernels, allocator)
    lp, dt = timed(lambda: policy.compute_log_probs(exp, 1.0), device)
    row("policy log-probs", dt, 1)
    _, dt = timed(lambda: ref.compute_log_probs(exp, 1.0), device)
    row("reference log-probs", dt, 1)
    exp.old_log_probs = lp
    exp.advantages = torch.randn(exp.action_mask.shape, generator=torch.Generator().manual_seed(0)) * exp.action_mask
    policy.train_steps([exp], [actions], 1.0)  # warm-up step
    _, dt = timed(lambda: [policy.train_steps([exp], [actions], 1.0) for _ in range(args.steps)], device)
    row("train step", dt / args.steps, 3)

    title = (f"policy throughput: {args.shape} shape, ZeRO-{args.zero_stage}, {dtype}, {len(exp)} samples "
             f"(prompts {args.prompt_len}, responses {args.response_len}), micro-batch {args.micro_batch}, "
             f"gradient checkpointing {cfg.model.gradient_checkpointing}, packing {args.packing_samples}")
    return report(title, device, rows, ["phase", "seconds", "real tokens/s", "padding %", "MFU %"], args.json)


if __name__ == "__main__":
    main()
