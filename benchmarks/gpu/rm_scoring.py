"""Reward-model scoring throughput: ``RMScorer`` (the reward actor's scorer) in sequences/s.

Item 4 of issue 6: a Bradley-Terry reward model of the given backbone shape (random weights, a fresh
value head) scores (question, program) pairs of about ``--seq_len`` tokens, at several batch sizes.

    python benchmarks/gpu/rm_scoring.py --shape 1.5b                                      # on a GPU
    python benchmarks/gpu/rm_scoring.py --shape toy --sequences 8 --seq_len 32 --batch_sizes 4   # CI
"""
from __future__ import annotations

import argparse
import random
import string
from pathlib import Path

from shapes import SHAPES, build_model_dir, device_and_dtype, report, timed


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--sequences", type=int, default=256)
    ap.add_argument("--seq_len", type=int, default=1024, help="tokens per scored sequence (about)")
    ap.add_argument("--batch_sizes", default="16,64")
    ap.add_argument("--work_dir", type=Path, default=Path("/tmp/acecoder_gpu_bench"))
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    from rewards.reward_model import encode_for_scoring
    from rewards.rm_scorer import RMScorer

    device, dtype = device_and_dtype(args.device)
    model_dir = build_model_dir(args.shape, args.work_dir / args.shape, dtype)
    rng = random.Random(0)
    letters = string.ascii_lowercase + " \n"
    # the local tokenizer is byte-level without merges for random text: about a token per character
    pairs = [("".join(rng.choices(letters, k=args.seq_len // 4)),
              "".join(rng.choices(letters, k=3 * args.seq_len // 4))) for _ in range(args.sequences)]
    scorer = RMScorer(str(model_dir), device=device, max_length=args.seq_len + 64, clip=None)
    rows = []
    for bs in (int(x) for x in args.batch_sizes.split(",")):
        scorer.batch_size = bs
        scorer.raw_scores(pairs[:bs])  # warm-up
        scores, dt = timed(lambda: scorer.raw_scores(pairs), device)
        assert len(scores) == len(pairs)
        tokens = sum(len(encode_for_scoring(scorer.tokenizer, q, p, scorer.max_length)) for q, p in pairs)
        rows.append({"batch size": bs, "sequences/s": len(pairs) / dt, "tokens/s": tokens / dt})
    title = (f"reward-model scoring: {args.shape} backbone, {dtype}, {args.sequences} sequences of "
             f"~{args.seq_len} tokens")
    return report(title, device, rows, ["batch size", "sequences/s", "tokens/s"], args.json)


if __name__ == "__main__":
    main()
