"""Rollout generation throughput: the project's transformers engine against plain ``generate``.

Item 3 of issue 6: N prompts of a fixed length, one sample each at temperature 1, a fixed number of
new tokens (random weights almost never sample the end token, so rows run to the limit); generated
tokens per second for each prompt count. The vLLM engine has its own proof (issue 9).

    python benchmarks/gpu/generation_throughput.py --shape 1.5b                       # on a GPU
    python benchmarks/gpu/generation_throughput.py --shape toy --prompts 2,4 --prompt_len 8 \
        --new_tokens 8                                                                  # CI, on CPU
"""
from __future__ import annotations

import argparse
import random
from functools import partial
from pathlib import Path

import torch

from shapes import FIRST_PLAIN_ID, SHAPES, build_model_dir, device_and_dtype, report, timed


def plain_generate(model, prompts: list[list[int]], new_tokens: int, pad_id: int) -> int:
    ids = torch.tensor(prompts, device=model.device)  # equal lengths: no padding needed
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                         top_p=1.0, top_k=0, max_new_tokens=new_tokens, pad_token_id=pad_id)
    return int((out[:, ids.shape[1]:] != pad_id).sum())


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--prompts", default="64,256", help="prompt counts, comma-separated")
    ap.add_argument("--prompt_len", type=int, default=256)
    ap.add_argument("--new_tokens", type=int, default=512)
    ap.add_argument("--max_batch_tokens", type=int, default=1 << 20, help="the engine's rows x tokens per chunk")
    ap.add_argument("--work_dir", type=Path, default=Path("/tmp/acecoder_gpu_bench"))
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    from transformers import AutoModelForCausalLM

    from trainer.engines import SamplingParams
    from trainer.engines.hf_engine import TransformersEngine

    device, dtype = device_and_dtype(args.device)
    model_dir = build_model_dir(args.shape, args.work_dir / args.shape, dtype)
    engine = TransformersEngine(str(model_dir), device=device, dtype=str(dtype).removeprefix("torch."),
                                max_batch_tokens=args.max_batch_tokens)
    plain = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    rng = random.Random(0)
    vocab = SHAPES[args.shape]["vocab_size"]
    rows = []
    for n in (int(x) for x in args.prompts.split(",")):
        prompts = [[rng.randrange(FIRST_PLAIN_ID, vocab) for _ in range(args.prompt_len)] for _ in range(n)]
        params = SamplingParams(n=1, temperature=1.0, max_new_tokens=args.new_tokens, seed=0)
        engine.generate(prompts[:2], SamplingParams(n=1, max_new_tokens=4, seed=0))  # warm-up
        comps, dt = timed(partial(engine.generate, prompts, params), device)
        ours = sum(len(c.response_ids) for c in comps) / dt
        with torch.no_grad():
            made, dt_plain = timed(partial(plain_generate, plain, prompts, args.new_tokens, engine.pad_token_id),
                                   device)
        base = made / dt_plain
        rows.append({"prompts": n, "ours tokens/s": ours, "plain generate tokens/s": base, "ours / plain": ours / base})
    title = (f"generation throughput: {args.shape} shape, {dtype}, prompts of {args.prompt_len} tokens, "
             f"{args.new_tokens} new tokens, 1 sample each")
    return report(title, device, rows, ["prompts", "ours tokens/s", "plain generate tokens/s", "ours / plain"],
                  args.json)


if __name__ == "__main__":
    main()
