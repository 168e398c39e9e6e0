"""A rollout engine on plain transformers: a batched sampling loop over a KV cache.

For tests, the CPU demo, and any model vLLM cannot serve. It is ~15-28x slower than vLLM on a GPU
(measured on an H100 at the 1.5B shape), but its numerics are simple enough to check token by token:

- prompts are left-padded into one batch (attention mask + position ids that skip the padding),
  prefilled once, then decoded one token per step with a ``DynamicCache``; rows that finish are
  dropped from the batch and the cache;
- ``n`` samples per prompt are ``n`` copies of the prompt's row;
- the batch is cut into chunks of at most ``max_batch_tokens`` (rows x (longest prompt + new tokens));
- sampling: temperature, then nucleus (top-p) truncation, then one draw from a ``torch.Generator``
  seeded with ``params.seed`` (or a generator owned by the engine and seeded once with ``seed``),
  so the output is a function of (weights, prompts, params, seed, max_batch_tokens);
- temperature 0 is greedy (argmax);
- ``sleep()`` moves the weights to CPU memory (on a CPU device they stay) and refuses generation
  and weight loads until ``wake_up()``, so a colocated run that gets the order wrong fails loudly.

Recorded log-probs: ``log_softmax(logits / temperature)`` at the sampled token, computed in fp32
BEFORE top-p truncation, i.e. exactly what the trainer recomputes with
``algorithms.log_probs_from_logits(logits, labels, temperature)`` on prompt + response. For
greedy decoding they are taken at temperature 1. (vLLM's ``processed_logprobs`` mode differs when
top_p < 1: its values are renormalised over the nucleus; see vllm_engine.py.)
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from trainer.engines.base import Completion, RolloutEngine, SamplingParams, check_sampling_params

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TransformersEngine(RolloutEngine):
    def __init__(self, model_path: str, *, device: str = "cpu", dtype: str = "float32", seed: int = 0,
                 max_batch_tokens: int = 65536, attn_implementation: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        self.device = torch.device(device)
        self.max_batch_tokens = max_batch_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        kwargs = {"dtype": _DTYPES[dtype]}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        self.model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs).to(self.device).eval()
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_token_ids = _eos_ids(self.tokenizer, self.model)
        self._generator = torch.Generator(device=self.device).manual_seed(seed)
        self.sleeping = False

    # ------------------------------------------------------------------------- generation

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Completion]:
        self._check_awake("generate")
        check_sampling_params(prompts, params)
        if params.seed is None:
            gen = self._generator
        else:
            gen = torch.Generator(device=self.device).manual_seed(params.seed)
        stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else self.eos_token_ids)
        rows = [(pi, si, tuple(int(t) for t in p)) for pi, p in enumerate(prompts) for si in range(params.n)]
        out: list[Completion] = []
        for chunk in self._chunks(rows, params.max_new_tokens):
            results = self._generate_chunk([r[2] for r in chunk], params, gen, stop_ids)
            for (pi, si, prompt), (ids, lps, reason) in zip(chunk, results):
                out.append(Completion(prompt_index=pi, sample_index=si, prompt_ids=prompt,
                                      response_ids=tuple(ids), logprobs=tuple(lps), finish_reason=reason))
        return out

    def _chunks(self, rows: list, max_new_tokens: int):
        chunk, longest = [], 0
        for row in rows:
            new_longest = max(longest, len(row[2]))
            if chunk and (len(chunk) + 1) * (new_longest + max_new_tokens) > self.max_batch_tokens:
                yield chunk
                chunk, new_longest = [], len(row[2])
            chunk.append(row)
            longest = new_longest
        if chunk:
            yield chunk

    def _generate_chunk(self, prompts: list[tuple[int, ...]], params: SamplingParams,
                        gen: torch.Generator, stop_ids: set[int]):
        from transformers import DynamicCache

        rows = len(prompts)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        reasons = ["length"] * rows
        if params.max_new_tokens == 0:
            return list(zip(tokens, logprobs, reasons))

        width = max(len(p) for p in prompts)
        input_ids = torch.full((rows, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        next_position = positions[:, -1] + 1
        cache = DynamicCache(config=self.model.config)
        alive = list(range(rows))  # chunk row of each batch row still decoding

        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                            past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        for step in range(params.max_new_tokens):
            token, token_logprob = sample_next(logits, params.temperature, params.top_p, gen)
            keep = []
            for j, (t, lp) in enumerate(zip(token.tolist(), token_logprob.tolist())):
                row = alive[j]
                tokens[row].append(t)
                logprobs[row].append(lp)
                if t in stop_ids:
                    reasons[row] = "stop"
                else:
                    keep.append(j)
            if not keep or step == params.max_new_tokens - 1:
                break
            if len(keep) < len(alive):
                idx = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(idx)
                mask, next_position, token = mask[idx], next_position[idx], token[idx]
                alive = [alive[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
            logits = self.model(input_ids=token[:, None], attention_mask=mask,
                                position_ids=next_position[:, None], past_key_values=cache,
                                use_cache=True).logits[:, -1]
            next_position = next_position + 1
        return list(zip(tokens, logprobs, reasons))

    # ------------------------------------------------------------------------- weights

    @torch.no_grad()
    def load_weights(self, named_tensors: Sequence[tuple[str, torch.Tensor]]) -> None:
        # remove_duplicate=False lists tied weights under every name (lm_head.weight and
        # model.embed_tokens.weight are one tensor when tie_word_embeddings is set).
        self._check_awake("load_weights")
        params = dict(self.model.named_parameters(remove_duplicate=False))
        for name, tensor in named_tensors:
            if name not in params:
                sample = ", ".join(sorted(params)[:4])
                raise KeyError(f"load_weights: the model has no parameter named {name!r} "
                               f"(Hugging Face names expected, e.g. {sample}, ...)")
            param = params[name]
            if tuple(param.shape) != tuple(tensor.shape):
                raise ValueError(f"load_weights: {name!r} has shape {tuple(tensor.shape)}, "
                                 f"the model expects {tuple(param.shape)}")
            param.copy_(tensor.to(device=param.device, dtype=param.dtype))

    def finish_weight_update(self) -> None:
        """Nothing to do: no cache outlives a generate() call."""

    # ------------------------------------------------------------------------- colocation

    def sleep(self) -> None:
        if not self.sleeping:
            self.model.to("cpu")
            self.sleeping = True

    def wake_up(self) -> None:
        if self.sleeping:
            self.model.to(self.device)
            self.sleeping = False

    def _check_awake(self, what: str) -> None:
        if self.sleeping:
            raise RuntimeError(f"TransformersEngine.{what}() while the engine sleeps: call wake_up() first")


def sample_next(logits: torch.Tensor, temperature: float, top_p: float,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of [B, V] logits and its fp32 log-prob at ``temperature``, pre top-p."""
    logits = logits.float()
    if temperature == 0:
        token = logits.argmax(-1)
        logp = F.log_softmax(logits, dim=-1)
    else:
        logp = F.log_softmax(logits / temperature, dim=-1)
        probs = logp.exp()
        if top_p < 1.0:
            probs = top_p_filter(probs, top_p)
        token = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    return token, logp.gather(-1, token[:, None]).squeeze(1)


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose mass reaches ``top_p`` (the top-1 stays)."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


def _eos_ids(tokenizer, model) -> set[int]:
    """The tokenizer's eos plus the generation config's (Qwen lists <|im_end|> and <|endoftext|>)."""
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return ids
