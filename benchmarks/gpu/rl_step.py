"""One Reinforce++ step in one process, timed phase by phase: item 5 of issue 6.

The same phases as ``Trainer.run_step`` without Ray (the worker classes are plain): the transformers
engine samples ``--prompts`` x ``--n`` answers, the real sandbox runs each decoded answer against a
fixed test (random weights write no passing code: this times the path, not the reward), the policy
and the reference compute log-probs, advantages are computed on the CPU (as the driver does), the
policy takes its optimizer steps, and the weights go to the engine in buckets. Prints each phase's
seconds and share.

    python benchmarks/gpu/rl_step.py --shape 0.5b                                            # on a GPU
    python benchmarks/gpu/rl_step.py --shape toy --prompts 2 --n 2 --prompt_len 8 --new_tokens 8    # CI
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from shapes import FIRST_PLAIN_ID, SHAPES, build_model_dir, device_and_dtype, report, sync


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4, help="samples per prompt")
    ap.add_argument("--prompt_len", type=int, default=256)
    ap.add_argument("--new_tokens", type=int, default=512)
    ap.add_argument("--micro_batch", type=int, default=8)
    ap.add_argument("--zero_stage", type=int, default=2)
    ap.add_argument("--packing_samples", action="store_true")
    ap.add_argument("--sandbox_workers", type=int, default=8)
    ap.add_argument("--work_dir", type=Path, default=Path("/tmp/acecoder_gpu_bench"))
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    from common.extract import extract_code
    from common.net import free_port
    from sandbox import Job, SandboxPool
    from trainer.algorithms import compute_advantages
    from trainer.config import RLConfig
    from trainer.engines import SamplingParams
    from trainer.engines.hf_engine import TransformersEngine
    from trainer.experience import PromptItem, build_experience
    from trainer.policy import PolicyWorker

    device, dtype = device_and_dtype(args.device)
    model_dir = str(build_model_dir(args.shape, args.work_dir / args.shape, dtype))
    cfg = RLConfig()
    cfg.train.zero_stage = args.zero_stage
    cfg.train.actor_num_gpus_per_node = 1 if device == "cuda" else 0
    cfg.train.packing_samples = args.packing_samples
    batch = args.prompts * args.n
    cfg.train.train_batch_size, cfg.train.micro_train_batch_size = batch, min(args.micro_batch, batch)
    port = free_port()
    policy = PolicyWorker(cfg, model_dir, train=True, master_port=port, total_steps=2)
    ref = PolicyWorker(cfg, model_dir, train=False, master_port=port)
    engine = TransformersEngine(model_dir, device=device, dtype=str(dtype).removeprefix("torch."),
                                max_batch_tokens=1 << 22)
    rng = random.Random(0)
    vocab = SHAPES[args.shape]["vocab_size"]
    prompts = [PromptItem(str(i), tuple(rng.randrange(FIRST_PLAIN_ID, vocab) for _ in range(args.prompt_len)), {})
               for i in range(args.prompts)]
    params = SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.new_tokens, seed=0)
    timing: dict[str, float] = {}

    def phase(name: str, fn):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        timing[name] = time.perf_counter() - t0
        return out

    with SandboxPool(workers=args.sandbox_workers) as pool:
        engine.generate([p.prompt_ids for p in prompts[:1]], SamplingParams(n=1, max_new_tokens=2, seed=0))  # warm-up
        completions = phase("generate", lambda: engine.generate([p.prompt_ids for p in prompts], params))
        exp = build_experience(prompts, completions, engine.pad_token_id, args.n)
        jobs = [Job(str(i), extract_code(engine.tokenizer.decode(c.response_ids)), ["assert f(1) == 1"])
                for i, c in enumerate(completions)]
        results = phase("reward (sandbox)", lambda: pool.run_many(jobs))
    exp.rewards = torch.tensor([float(r.all_passed) for r in results])
    exp.old_log_probs = phase("policy log-probs", lambda: policy.compute_log_probs(exp, 1.0))
    exp.ref_log_probs = phase("reference log-probs", lambda: ref.compute_log_probs(exp, 1.0))
    adv, _ = phase("advantages", lambda: compute_advantages(
        exp.rewards, exp.old_log_probs, exp.ref_log_probs, exp.action_mask, estimator="reinforce", group_size=args.n))
    exp.advantages = adv
    phase("train", lambda: policy.train_steps([exp], [float(exp.action_mask.sum())], 1.0))

    def weight_sync():
        for bucket in policy.weight_buckets(256 << 20, to_cpu=False):
            engine.load_weights(bucket)
        engine.finish_weight_update()

    phase("weight sync", weight_sync)
    total = sum(timing.values())
    rows = [{"phase": k, "seconds": v, "share %": 100 * v / total} for k, v in timing.items()]
    rows.append({"phase": "step", "seconds": total, "share %": 100.0})
    tokens = int(exp.action_mask.sum())
    title = (f"one RL step: {args.shape} shape, {dtype}, {args.prompts} prompts x {args.n} samples, prompts of "
             f"{args.prompt_len} tokens, up to {args.new_tokens} new ({tokens} generated, "
             f"{tokens / timing['generate']:.0f} tokens/s), ZeRO-{args.zero_stage}, packing {args.packing_samples}")
    return report(title, device, rows, ["phase", "seconds", "share %"], args.json)


if __name__ == "__main__":
    main()
