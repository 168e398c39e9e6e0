"""Model shapes, RL-shaped batches and the FLOP count shared by the GPU benchmarks.

Models are built from a config with random weights (no hub access): the published Qwen2.5-Coder
0.5B and 1.5B shapes, and a toy shape that lets CI run every script on CPU in seconds.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# Qwen2.5-Coder-{0.5B,1.5B} config.json values (vocab 151936, tied embeddings, rope theta 1e6).
SHAPES = {
    "toy": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=512),
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936),
}
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM
FIRST_PLAIN_ID = 4  # the local tokenizer's special tokens take ids 0-3


def build_model_dir(shape: str, out: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """A config-only model with random weights saved at ``out`` (reused when already there)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from trainer.tiny import build_tokenizer

    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(str(out))  # byte-level, trained locally and saved there: prompts are token ids
    cfg = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).to(dtype)
    model.save_pretrained(out)
    return out


def rl_batch(n: int, prompt_range: tuple[int, int], response_range: tuple[int, int], vocab: int, seed: int = 0):
    """``n`` completions of mixed lengths, as the rollout engines return them (groups of 1)."""
    from trainer.engines.base import Completion
    from trainer.experience import PromptItem, build_experience

    rng = random.Random(seed)
    comps = []
    for i in range(n):
        p = tuple(rng.randrange(FIRST_PLAIN_ID, vocab) for _ in range(rng.randint(*prompt_range)))
        r = tuple(rng.randrange(FIRST_PLAIN_ID, vocab) for _ in range(rng.randint(*response_range)))
        comps.append(Completion(i, 0, p, r, tuple([0.0] * len(r)), "length"))
    return build_experience([PromptItem(str(i), (), {}) for i in range(n)], comps, pad_id=0, group_size=1)


def flops_per_token(shape: str, context: float) -> float:
    """Forward FLOPs per token: 2 x matmul parameters (the LM head included, embeddings excluded)
    plus attention scores and values, 4 x layers x hidden x context (causal: context ~ half the row)."""
    s = SHAPES[shape]
    h, i, L, heads, kv = (s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"],
                          s["num_attention_heads"], s["num_key_value_heads"])
    head_dim = h // heads
    per_layer = h * h * 2 + h * kv * head_dim * 2 + 3 * h * i  # q, o; k, v; gate, up, down
    return 2 * (L * per_layer + h * s["vocab_size"]) + 4 * L * h * context


def device_and_dtype(device: str) -> tuple[str, torch.dtype]:
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    return dev, torch.bfloat16 if dev == "cuda" else torch.float32


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> tuple[object, float]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def describe(device: str) -> str:
    import transformers

    what = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    return f"{what}; torch {torch.__version__}, transformers {transformers.__version__}; {time.strftime('%Y-%m-%d')}"


def report(title: str, device: str, rows: list[dict], cols: list[str], json_path: Path | None) -> list[dict]:
    """Print the title, the machine, the table (and peak GPU memory); write the rows as JSON if asked."""
    print(f"{title}\n{describe(device)}")
    print(table(rows, cols))
    if device == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))
    return rows


def table(rows: list[dict], cols: list[str]) -> str:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(cols, widths)) for r in rows]
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)
