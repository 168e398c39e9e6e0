"""Rollout throughput on a real model: raw ``vllm.LLM.generate``, our vLLM engine, our transformers
engine and plain ``model.generate``, on the same prompts in one run.

The prompts are MBPP questions in SmolLM2-135M-Instruct's chat template; every path samples ``n``
answers per prompt at the same temperature and generates exactly ``--max_new_tokens`` tokens per
sample (eos ignored), so each path does the same work. Reported: generated tokens per second for
each path and the ratios the targets are stated in (ours / raw vLLM, ours / plain generate), and the
time to push the full model's weights into the vLLM engine (one weight sync).

    python benchmarks/engine_throughput.py                                   # 64 prompts x 8 x 128
    python benchmarks/engine_throughput.py --prompts 16 --samples 4 --max_new_tokens 64 --dtype float32

The vLLM engine core runs in its own process and binds its OpenMP threads to ``--threads`` cores;
the transformers paths use ``torch.set_num_threads(--threads)``. Needs a ``__main__`` guard (vLLM
starts its engine core with spawn).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def mbpp_prompts(tokenizer, data_dir: Path, count: int) -> list[list[int]]:
    rows = [json.loads(line) for line in (data_dir / "mbpp.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if 11 <= int(r["task_id"]) <= 510][:count]
    if len(rows) < count:
        raise SystemExit(f"{data_dir / 'mbpp.jsonl'} has only {len(rows)} test-split questions; asked for {count}")
    out = []
    for r in rows:
        msg = f"{r['text']}\nYour code should pass this test:\n{r['test_list'][0]}"
        enc = tokenizer.apply_chat_template([{"role": "user", "content": msg}], add_generation_prompt=True,
                                            tokenize=True, return_dict=True)
        out.append(list(enc["input_ids"]))
    return out


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def run_vllm(args, model: str, prompts: list[list[int]]) -> dict:
    import vllm

    from trainer.engines.base import SamplingParams
    from trainer.engines.vllm_engine import VLLMEngine
    from trainer.engines.weight_sync import cpu_buckets

    (engine, start_s) = timed(lambda: VLLMEngine(
        model, dtype=args.dtype, seed=0, max_model_len=args.max_model_len, enforce_eager=not args.compile,
        kv_cache_memory_bytes=int(args.kv_cache_gb * (1 << 30)), num_threads=args.threads,
        cpu_bind=args.cpu_bind))
    ours = SamplingParams(n=args.samples, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                          seed=0, ignore_eos=True)
    raw = [vllm.SamplingParams(n=args.samples, temperature=args.temperature, max_tokens=args.max_new_tokens,
                               seed=i * args.samples, logprobs=0, ignore_eos=True, detokenize=False,
                               flat_logprobs=True) for i in range(len(prompts))]
    requests = [vllm.TokensPrompt(prompt_token_ids=p) for p in prompts]
    engine.generate(prompts[:2], SamplingParams(n=2, max_new_tokens=8, seed=0))  # warm-up
    rows = {}
    for _ in range(args.repeats):  # alternate the two so drifting load hits both alike
        outs, dt = timed(lambda: engine.llm.generate(requests, raw, use_tqdm=False))
        made = sum(len(o.token_ids) for out in outs for o in out.outputs)
        rows.setdefault("raw vllm.LLM.generate", []).append((made, dt))
        engine.finish_weight_update()  # same prefix-cache state for both paths
        comps, dt = timed(lambda: engine.generate(prompts, ours))
        rows.setdefault("our VLLMEngine", []).append((sum(len(c.response_ids) for c in comps), dt))
        engine.finish_weight_update()
    from transformers import AutoModelForCausalLM
    import torch

    torch.set_num_threads(args.threads)
    named = list(AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).named_parameters())

    def sync():
        for bucket in cpu_buckets(named, args.bucket_mb):
            engine.load_weights(bucket)
        engine.finish_weight_update()

    _, sync_s = timed(sync)
    engine.close()
    return {"rows": rows, "start_s": start_s, "sync_s": sync_s,
            "sync_mb": sum(p.numel() * p.element_size() for _, p in named) / 2**20}


def run_transformers(args, model: str, prompts: list[list[int]]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.engines.base import SamplingParams
    from trainer.engines.hf_engine import TransformersEngine

    torch.set_num_threads(args.threads)
    engine = TransformersEngine(model, dtype=args.dtype, seed=0)
    params = SamplingParams(n=args.samples, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                            seed=0, ignore_eos=True)
    rows = {}
    if not args.skip_hf_engine:
        comps, dt = timed(lambda: engine.generate(prompts, params))
        rows["our TransformersEngine"] = [(sum(len(c.response_ids) for c in comps), dt)]
    plain = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, args.dtype)).eval()
    flat = [p for p in prompts for _ in range(args.samples)]
    pad = engine.pad_token_id
    made, total = 0, 0.0
    for i in range(0, len(flat), args.plain_batch):
        batch = flat[i:i + args.plain_batch]
        width = max(map(len, batch))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        with torch.no_grad():
            out, dt = timed(partial(
                plain.generate, input_ids=ids, attention_mask=mask, do_sample=True, temperature=args.temperature,
                top_p=1.0, top_k=0, max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens,
                pad_token_id=pad))
        made += int(out.shape[0] * (out.shape[1] - width))
        total += dt
    rows[f"plain model.generate (batch {args.plain_batch})"] = [(made, total)]
    return {"rows": rows}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="checkpoint directory (default: trainer.models' smollm2-135m-instruct)")
    ap.add_argument("--data_dir", type=Path,
                    default=Path(os.environ.get("ACECODER_DATA_DIR", ROOT.parent / "shared" / "data")))
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max_new_tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--cpu_bind", default="nobind", help="vLLM CPU thread placement: nobind, auto or a core list")
    ap.add_argument("--kv_cache_gb", type=float, default=2.0, help="vLLM CPU KV-cache size")
    ap.add_argument("--max_model_len", type=int, default=1024)
    ap.add_argument("--compile", action="store_true", help="let vLLM compile the model (default: eager)")
    ap.add_argument("--repeats", type=int, default=1, help="vLLM raw/ours rounds, alternating")
    ap.add_argument("--plain_batch", type=int, default=64, help="rows per plain generate() call")
    ap.add_argument("--bucket_mb", type=float, default=64)
    ap.add_argument("--skip_hf_engine", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    from trainer.models import prepare

    model = args.model or str(prepare("smollm2-135m-instruct"))
    prompts = mbpp_prompts(AutoTokenizer.from_pretrained(model), args.data_dir, args.prompts)
    load = os.getloadavg()[0]
    v = run_vllm(args, model, prompts)
    t = run_transformers(args, model, prompts)
    rates = {}
    for name, runs in {**v["rows"], **t["rows"]}.items():
        rates[name] = sum(m for m, _ in runs) / sum(d for _, d in runs)
    ours, raw = rates["our VLLMEngine"], rates["raw vllm.LLM.generate"]
    plain = next(r for n, r in rates.items() if n.startswith("plain"))
    print(f"\nengine throughput: {model}\n{args.prompts} MBPP prompts x {args.samples} samples x "
          f"{args.max_new_tokens} new tokens, T={args.temperature}, {args.dtype}, {args.threads} threads "
          f"(vLLM bind {args.cpu_bind}), "
          f"load at start {load:.2f}")
    for name, r in rates.items():
        print(f"  {name:38s} {r:9.1f} tokens/s")
    print(f"  ours / raw vLLM                        {ours / raw:9.3f}   (target >= 0.95)")
    print(f"  ours / plain generate                  {ours / plain:9.3f}   (target >= 2)")
    print(f"  vLLM engine start {v['start_s']:.1f} s; "
          f"full weight sync ({v['sync_mb']:.0f} MB fp32) {v['sync_s']:.2f} s")
    result = {"model": model, "args": {k: str(x) for k, x in vars(args).items()}, "load_at_start": load,
              "tokens_per_s": rates, "ours_over_raw_vllm": ours / raw, "ours_over_plain_generate": ours / plain,
              "vllm_start_s": v["start_s"], "weight_sync_s": v["sync_s"], "weight_sync_mb": v["sync_mb"]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
