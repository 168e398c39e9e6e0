"""The single controller: one driver process that runs the Reinforce++ loop over Ray actor groups.

    step: rollout (prompts -> engines generate, chunk by chunk; each finished chunk goes to the reward
          actors at once; trainer/rollout.py) -> policy and reference log-probs -> advantages ->
          policy update -> publish the new weights to the engines

When a step is one on-policy optimizer step without a reference model (one epoch, one train batch,
sync), the policy's log-prob pass is skipped: it would equal the update's own first forward, which
then serves as the old log-probs (ratio exactly 1) and as the stale-weights check.

With --async_train the rollout of step k+q (q = --async_queue_size) generates on the engines while
the policy trains on step k, with the weights of step k-1; the PPO ratio then uses the engines'
log-probs (the behaviour policy's). With --colocate_all_models --vllm_enable_sleep the engines
sleep while the policy trains.

The step loop is here; mixed into ``Trainer`` from their modules: building the actors and moving
weights to the engines (trainer/actors_setup.py), evaluation (trainer/evaluation.py), and what a
checkpoint saves and restores (trainer/checkpoint.py).
"""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import numpy as np
import ray
import torch

from rewards.base import RewardResult

from . import checkpoint as ckpt
from .actors import ActorGroup, StepFailed
from .actors_setup import ActorSetup
from .algorithms import compute_advantages, masked_mean
from .checkpoint import CheckpointState
from .config import ConfigError, RLConfig
from .data import PromptSampler, load_prompts
from .evaluation import Evaluation, _pass_rates
from .experience import Experience, PromptItem, build_experience
from .reward_norm import RewardNormalizer
from .rollout import Rollout, RolloutPipeline
from .rollout_maker import RolloutMaker, derive_seed
from .threads import size_threads, threads_for
from .tracking import Tracker, say


class Trainer(ActorSetup, Evaluation, CheckpointState):
    def __init__(self, cfg: RLConfig):
        from transformers import AutoTokenizer

        self.cfg = cfg.validate()
        r, t = cfg.rollout, cfg.train
        size_threads(threads_for(t.num_threads, None))  # the driver's own torch work
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model.pretrain,
                                                       trust_remote_code=cfg.model.trust_remote_code)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        self.items = load_prompts(cfg.data.prompt_data, self.tokenizer, cfg.data)
        self.eval_items: list[PromptItem] = []
        if cfg.data.eval_data:
            eval_cfg = dataclasses.replace(cfg.data, max_samples=cfg.data.eval_samples)
            self.eval_items = load_prompts(cfg.data.eval_data, self.tokenizer, eval_cfg)
        self.stop_at_eval: float | None = cfg.logging.stop_at_eval_pass_rate or None
        self.sampler = PromptSampler(len(self.items), r.rollout_batch_size, t.seed)
        self.total_steps = t.max_steps or t.num_episodes * self.sampler.steps_per_episode()
        samples = r.rollout_batch_size * r.n_samples_per_prompt
        self.opt_steps_per_rl_step = (samples // t.train_batch_size) * t.max_epochs
        self.step = 0
        self.policy_version = 0  # policy updates so far (= steps done)
        self.engine_version = -1  # the version the engines hold (-1: none loaded yet)
        self._versions: dict[int, list] = {}  # published versions still needed: object refs of buckets
        self._versions_lock = threading.Lock()  # the driver publishes, the rollout thread loads
        self._stop = False
        self._drain_s = 0.0  # time this step's evaluation and checkpoint waited for queued rollouts
        resume_from = ckpt.find_resume(ckpt.ckpt_root(cfg.checkpoint.save_path), cfg.checkpoint.resume)
        state = ckpt.load_state(resume_from) if resume_from else None
        if state is not None:
            diffs = ckpt.config_differences(state["config"], cfg.to_dict())
            if diffs:
                raise ConfigError(f"--resume {resume_from}: the configuration differs from the checkpoint's:\n  "
                                  + "\n  ".join(diffs) + "\n(start a new --save_path, or pass the same options)")
        self.reward_norm = RewardNormalizer.from_config(cfg)
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=True)
        self._build_actors()
        self.maker = RolloutMaker(cfg, self.items, self.sampler, self.tokenizer, self.pad_id, self.engines,
                                  self.rewards,
                                  (lambda exp: self._logprob_async(self.ref, exp)) if self.ref is not None else None,
                                  self.reward_norm)
        sleeps = t.colocate_all_models and r.vllm_enable_sleep
        self.pipeline = RolloutPipeline(self._load_version, asynchronous=t.async_train,
                                        wake=self.engines.wake_up if sleeps else None,
                                        sleep=self.engines.sleep if sleeps else None)
        if sleeps:
            self.engines.sleep()  # the policy and reference have loaded: the engines wait asleep
        if state is not None:
            self._restore(resume_from, state)
        self.tracker = Tracker(cfg, resumed_step=self.step)
        self._publish()  # engines start from the policy's weights (the checkpoint's, on resume)

    # ---------------------------------------------------------------- rollouts (pipeline jobs)
    def _queue_rollouts(self, step: int) -> None:
        """Make sure the rollouts of steps step .. step+q are queued (q = 0 without --async_train).
        Rollout j samples with version j-1-q: the one published when step j-q started."""
        q = self.cfg.train.async_queue_size if self.cfg.train.async_train else 0
        for j in range(step, min(step + q, self.total_steps) + 1):
            version = max(0, min(j - 1 - q, self.policy_version))
            self.pipeline.submit_rollout(j, version, lambda j=j, v=version: self.maker.rollout(j, v))

    # ---------------------------------------------------------------- weights to the engines
    def _publish(self) -> None:
        """Make the policy's current weights (version ``policy_version``) available to later jobs."""
        if not self.nccl_sync:  # NCCL broadcasts straight from the policy when a job needs it
            buckets = self._objstore_buckets()
            with self._versions_lock:
                self._versions[self.policy_version] = buckets

    def _load_version(self, version: int) -> float:
        """Bring the engines to a published version (runs inside pipeline jobs); returns seconds."""
        if self.engine_version == version:
            return 0.0
        t0 = time.perf_counter()
        if self.nccl_sync:
            self._sync_weights()
        else:
            with self._versions_lock:
                buckets = self._versions[version]
                for old in [v for v in self._versions if v < version]:
                    del self._versions[old]
            self.engines.load_weights(buckets)
        self.engine_version = version
        return time.perf_counter() - t0

    # ---------------------------------------------------------------- one step
    def run_step(self, step: int) -> dict:
        r, t = self.cfg.rollout, self.cfg.train
        self._queue_rollouts(step)
        t0 = time.perf_counter()
        ro = self.pipeline.take(step)
        timing: dict[str, float] = {"rollout_wait": time.perf_counter() - t0, **ro.timing}
        exp = build_experience(ro.prompts, ro.completions, self.pad_id, r.n_samples_per_prompt)
        results = ro.results
        gen_tokens = int(exp.action_mask.sum())

        mask = exp.action_mask
        staleness = self.policy_version - ro.weight_version
        fused = self._one_on_policy_update(len(exp), staleness)
        t0 = time.perf_counter()
        policy_lp = None
        if not fused:
            lp_refs = self._logprob_async(self.policy, exp)
            ref_lp = ro.ref_log_probs(exp.num_actions) if self.ref is not None else None
            ref_refs = self._logprob_async(self.ref, exp) if self.ref is not None and ref_lp is None else None
            policy_lp = torch.cat(ray.get(lp_refs), 0)
            exp.ref_log_probs = torch.cat(ray.get(ref_refs), 0) if ref_refs is not None else ref_lp
            gap = float(masked_mean((exp.engine_log_probs - policy_lp).abs(), mask))
            self._check_engine_gap(step, staleness, gap)
        timing["logprob"] = time.perf_counter() - t0
        exp.rewards = torch.tensor([res.value for res in results], dtype=torch.float32)
        exp.info["reward_status"] = [res.status for res in results]
        # On the driver's CPU: a few element-wise passes over [N, T] (milliseconds), and the driver
        # holds no GPU in Ray's accounting, so it must not create a CUDA context on the actors' GPUs.
        exp.advantages, exp.returns = compute_advantages(
            exp.rewards, policy_lp, exp.ref_log_probs, mask,
            estimator=t.advantage_estimator, kl_coef=t.init_kl_coef, kl_estimator=t.kl_estimator,
            gamma=t.gamma, group_size=r.n_samples_per_prompt, reward_clip=t.reward_clip_range)
        # the PPO ratio is taken against the policy that sampled: off-policy, that is the engines'
        exp.old_log_probs = exp.engine_log_probs * mask if t.async_train else policy_lp  # None when fused

        t0 = time.perf_counter()
        train_stats = self._train(exp, step)
        timing["train"] = time.perf_counter() - t0
        train_gap = train_stats.pop("engine_logprob_gap")
        if fused:  # measured in the update's own forward, before its optimizer step
            gap = train_gap
            self._check_engine_gap(step, staleness, gap)
        t0 = time.perf_counter()
        self.policy_version += 1
        self._publish()
        timing["sync"] = timing.get("sync", 0.0) + time.perf_counter() - t0
        m = self._metrics(exp, results, train_stats, timing, gen_tokens, gap, policy_lp)
        m["staleness"] = staleness
        if r.dynamic_filtering:
            m.update({"dynamic_filtering/dropped_frac": ro.dropped_frac, "dynamic_filtering/rounds": ro.rounds,
                      "dynamic_filtering/zero_std_groups_trained": ro.zero_std_groups_trained})
        return m

    def _one_on_policy_update(self, n: int, staleness: int) -> bool:
        """True when the policy's log-prob pass would repeat the update's own first forward: one
        optimizer step (one epoch, fewer than two train batches), sampled with the current weights,
        and nothing else reads the policy's log-probs before the update (no reference model: the KL
        term needs them for the advantages)."""
        t = self.cfg.train
        return (not t.async_train and t.max_epochs == 1 and n < 2 * t.train_batch_size and staleness == 0
                and self.ref is None)

    def _check_engine_gap(self, step: int, staleness: int, gap: float) -> None:
        limit = self.cfg.rollout.max_logprob_diff
        if limit and staleness == 0 and gap > limit:
            raise StepFailed(f"step {step}: the engines' log-probs differ from the policy's by {gap:.3f} on "
                             f"average (> max_logprob_diff={limit}): stale or wrong weights in the rollout engines")

    def _logprob_async(self, group: ActorGroup, exp: Experience) -> list:
        world = len(group.actors)
        bounds = np.linspace(0, len(exp), world + 1).astype(int)
        return [a.compute_log_probs.remote(exp.select(range(bounds[i], bounds[i + 1]), trim=False),
                                           self.cfg.rollout.temperature)
                for i, a in enumerate(group.actors)]

    def _train(self, exp: Experience, step: int) -> dict:
        t, world = self.cfg.train, len(self.policy.actors)
        B = t.train_batch_size
        per_rank: list[list[Experience]] = [[] for _ in range(world)]
        tokens: list[float] = []
        for epoch in range(t.max_epochs):
            g = torch.Generator().manual_seed(derive_seed(t.seed, step, epoch, "shuffle"))
            perm = torch.randperm(len(exp), generator=g)
            for j in range(len(exp) // B):
                idx = perm[j * B:(j + 1) * B]
                tokens.append(float(exp.action_mask[idx].sum().clamp(min=1)))
                for rank, part in enumerate(torch.tensor_split(idx, world)):
                    per_rank[rank].append(exp.select(part.tolist()))
        stats = self.policy.call("train_steps", [(per_rank[i], tokens, self.cfg.rollout.temperature)
                                                 for i in range(world)])
        out = {k: sum(s[k] for s in stats)
               for k in ("policy_loss", "clip_frac", "approx_kl", "entropy", "engine_logprob_gap")}
        out.update(grad_norm=stats[0]["grad_norm"], lr=stats[0]["lr"])
        return out

    def _metrics(self, exp: Experience, results: list[RewardResult], train: dict, timing: dict,
                 gen_tokens: int, stale: float, policy_lp: torch.Tensor) -> dict:
        mask = exp.action_mask
        m: dict = {"reward_mean": float(exp.rewards.mean()),
                   "reward_std": float(exp.rewards.std()) if len(exp) > 1 else 0.0}
        m.update(_pass_rates(results, ""))
        if exp.ref_log_probs is not None:
            m["kl"] = float(masked_mean(policy_lp - exp.ref_log_probs, mask))
        m["response_length"] = float(mask.sum(1).float().mean())
        m["truncated_frac"] = float(np.mean([f == "length" for f in exp.info["finish_reason"]]))
        m["engine_policy_logprob_diff"] = stale
        m.update(train)
        for status in set(exp.info["reward_status"]):
            m[f"reward_status/{status}"] = exp.info["reward_status"].count(status)
        m.update({f"timing/{k}": v for k, v in timing.items()})
        m["generate_tokens_per_s"] = gen_tokens / max(timing.get("generate", 0.0), 1e-9)
        m["engine_restarts"] = self.engines.restarts
        m["reward_actor_restarts"] = self.rewards.restarts
        return m

    def _drain(self) -> list[Rollout]:
        t0 = time.perf_counter()
        out = self.pipeline.drain()
        self._drain_s += time.perf_counter() - t0
        return out

    # ---------------------------------------------------------------- the run
    def fit(self) -> list[dict]:
        from tqdm import tqdm

        prev = signal.signal(signal.SIGTERM, self._on_sigterm)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="rl", unit="step",
                   disable=not self.cfg.logging.progress_bar)
        try:
            if self.eval_items and self.step == 0:
                self.tracker.log(0, self.evaluate(self.eval_items))
            last_done = time.perf_counter()
            while self.step < self.total_steps and not self._stop:
                self.step += 1
                metrics = self.run_step(self.step)
                # timing/step: wall time between consecutive step completions (evaluations and
                # checkpoints in between excluded); in async mode it is shorter than the phases' sum
                done = time.perf_counter()
                metrics["timing/step"] = done - last_done
                self._drain_s = 0.0
                every_eval = self.cfg.logging.eval_steps
                if self.eval_items and every_eval and (self.step % every_eval == 0 or self.step == self.total_steps):
                    metrics.update(self.evaluate(self.eval_items))
                    if self.stop_at_eval is not None and metrics.get("eval/pass_rate", 0) >= self.stop_at_eval:
                        self._stop = True
                if self.step % self.cfg.logging.logging_steps == 0 or self.step == self.total_steps:
                    self.tracker.log(self.step, metrics)
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", pass_rate=f"{metrics.get('pass_rate', 0):.3f}")
                every = self.cfg.checkpoint.save_steps
                if (every and self.step % every == 0) or self.step == self.total_steps or self._stop:
                    self.save()
                last_done = time.perf_counter() - self._drain_s  # waits for queued rollouts count
        finally:
            bar.close()
            signal.signal(signal.SIGTERM, prev)
        say(self.tracker.summary())
        return self.tracker.history

    def _on_sigterm(self, signum, frame) -> None:
        say("[rl] SIGTERM: finishing this step, then saving a checkpoint")
        self._stop = True

    def close(self) -> None:
        """Stop every actor of this run (the sandbox workers inside reward actors included)."""
        self.tracker.close()
        self.pipeline.close()
        # Reward actors stop their sandbox workers; engines shut their engine core down (a vLLM engine
        # killed with its actor leaves its shared-memory queues in /dev/shm).
        closing = [a.close.remote() for a in self.rewards.actors + self.engines.engines]
        for ref in closing:
            try:
                ray.get(ref, timeout=90)
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        groups = [self.policy.actors, self.engines.engines, self.rewards.actors]
        if self.ref is not None:
            groups.append(self.ref.actors)
        for actors in groups:
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001
                    pass

