"""One step's rollout on the engines and reward actors: chunks of prompts with derived seeds,
generated and scored chunk by chunk, grouped by prompt, refilled by dynamic sampling. Everything here
runs inside pipeline jobs (trainer/rollout.py), so only one thread ever drives the engines."""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from typing import Callable

import numpy as np
import ray
import torch

from rewards.base import Sample

from .config import RLConfig
from .data import PromptSampler
from .engines.base import SamplingParams
from .experience import PromptItem, build_experience
from .reward_norm import RewardNormalizer
from .rollout import Group, Rollout, fill_rollout
from .tracking import say


def derive_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


class RolloutMaker:
    def __init__(self, cfg: RLConfig, items: list[PromptItem], sampler: PromptSampler, tokenizer, pad_id: int,
                 engines, rewards, ref_log_probs: Callable | None = None,
                 reward_norm: RewardNormalizer | None = None):
        """``engines``: an EngineGroup; ``rewards``: a RewardPool; ``ref_log_probs(exp)``: object refs
        of the frozen reference's log-probs, or None (async mode then scores in the job);
        ``reward_norm``: the driver's normalisation of the reward model's scores (default: from cfg)."""
        self.cfg, self.items, self.sampler = cfg, items, sampler
        self.tokenizer, self.pad_id = tokenizer, pad_id
        self.engines, self.rewards, self.ref_log_probs = engines, rewards, ref_log_probs
        self.reward_norm = reward_norm if reward_norm is not None else RewardNormalizer.from_config(cfg)

    def chunks(self, prompts: list[PromptItem], step: int, rnd: int = 0) -> list[tuple[list, SamplingParams]]:
        r = self.cfg.rollout
        size = r.rollout_chunk_size or max(1, math.ceil(len(prompts) / max(2, r.vllm_num_engines)))
        out = []
        for c, s in enumerate(range(0, len(prompts), size)):
            seed = (derive_seed(self.cfg.train.seed, step, c) if rnd == 0
                    else derive_seed(self.cfg.train.seed, step, rnd, c))
            params = SamplingParams(n=r.n_samples_per_prompt, temperature=r.temperature, top_p=r.top_p,
                                    max_new_tokens=r.generate_max_len, seed=seed)
            out.append(([list(p.prompt_ids) for p in prompts[s:s + size]], params))
        return out

    def samples(self, prompts: list[PromptItem], completions: list, offset: int, tag: str) -> list[Sample]:
        out = []
        for c in completions:
            item = prompts[offset + c.prompt_index]
            text = self.tokenizer.decode(c.response_ids, skip_special_tokens=True)
            out.append(Sample(f"{tag}:{item.uid}:{c.sample_index}", item.record["question"], text, item.record))
        return out

    def generate_scored(self, prompts: list[PromptItem], chunks: list, tag: str, timing: dict,
                         with_ref: bool = False, training: bool = True) -> list[Group]:
        """Generate chunk by chunk, each finished chunk going to the reward actors at once; with
        ``with_ref`` the frozen reference scores the samples while the rewards are computed. The
        reward model's scores are normalised as one batch, in prompt order; only ``training``
        batches enter the running statistics."""
        offsets = np.cumsum([0] + [len(c[0]) for c in chunks[:-1]]).tolist()
        tickets = []

        def on_chunk(c: int, completions: list) -> None:
            tickets.append((c, self.rewards.submit(self.samples(prompts, completions, offsets[c], tag))))

        t0 = time.perf_counter()
        per_chunk = self.engines.generate(chunks, on_chunk=on_chunk)
        timing["generate"] = timing.get("generate", 0.0) + time.perf_counter() - t0
        comps = [dataclasses.replace(x, prompt_index=x.prompt_index + offsets[c])
                 for c, part in enumerate(per_chunk) for x in part]
        ref_refs = None
        if with_ref:
            ref_refs = self.ref_log_probs(build_experience(prompts, comps, self.pad_id, 1))
        t0 = time.perf_counter()
        tickets.sort(key=lambda x: x[0])
        results = [res for part in self.rewards.collect([tk for _, tk in tickets]) for res in part]
        results = self.reward_norm(results, update=training)
        timing["reward_wait"] = timing.get("reward_wait", 0.0) + time.perf_counter() - t0
        groups = [Group(p, [], [], [] if with_ref else None) for p in prompts]
        ref_lp = torch.cat(ray.get(ref_refs), 0) if ref_refs is not None else None
        for i, (comp, res) in enumerate(zip(comps, results)):
            g = groups[comp.prompt_index]
            g.completions.append(comp)
            g.results.append(res)
            if ref_lp is not None:
                g.ref_log_probs.append(ref_lp[i, :len(comp.response_ids)].clone())
        return groups

    def rollout(self, step: int, version: int) -> Rollout:
        """One step's groups (refilled by dynamic sampling when it is on). Runs as a pipeline job."""
        r = self.cfg.rollout
        timing: dict[str, float] = {}
        with_ref = self.cfg.train.async_train and self.ref_log_probs is not None  # frozen: off the training path

        def draw(rnd: int, n: int) -> list[Group]:
            prompts = [self.items[i] for i in self.sampler.next_batch(n)]
            tag = f"{step}" if rnd == 0 else f"{step}.{rnd}"
            return self.generate_scored(prompts, self.chunks(prompts, step, rnd), tag, timing, with_ref)

        ro = fill_rollout(step, version, draw, r.rollout_batch_size, r.dynamic_filtering,
                          r.dynamic_filtering_max_rounds, r.dynamic_filtering_reward_range)
        if ro.zero_std_groups_trained:
            say(f"[rl] step {step}: --dynamic_filtering_max_rounds={r.dynamic_filtering_max_rounds} reached; "
                f"training on {ro.zero_std_groups_trained} zero-variance groups too")
        ro.timing.update(timing)
        return ro
