"""The single controller: one driver process that runs the Reinforce++ loop over Ray actor groups.

    step: rollout (prompts -> engines generate, chunk by chunk; each finished chunk goes to the reward
          actors at once; trainer/rollout.py) -> policy and reference log-probs -> advantages ->
          policy update -> publish the new weights to the engines

With --async_train the rollout of step k+q (q = --async_queue_size) generates on the engines while
the policy trains on step k, with the weights of step k-1; the PPO ratio then uses the engines'
log-probs (the behaviour policy's). With --colocate_all_models --vllm_enable_sleep the engines
sleep while the policy trains.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import threading
import time

import numpy as np
import ray
import torch

from rewards.base import RewardResult

from . import checkpoint as ckpt
from .actors import ActorGroup, EngineGroup, RewardPool, StepFailed, gpu_bundles, remote_class, thread_env
from .net import free_port
from .algorithms import compute_advantages, masked_mean
from .config import ConfigError, RLConfig
from .data import PromptSampler, load_prompts
from .engines.base import SamplingParams
from .experience import Experience, PromptItem, build_experience
from .rollout import Rollout, RolloutPipeline
from .rollout_maker import RolloutMaker, derive_seed
from .threads import size_threads, threads_for
from .tracking import Tracker, say


class Trainer:
    def __init__(self, cfg: RLConfig):
        from transformers import AutoTokenizer

        self.cfg = cfg.validate()
        r, t = cfg.rollout, cfg.train
        size_threads(threads_for(t.num_threads, None))  # the driver's own torch work
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model.pretrain, trust_remote_code=cfg.model.trust_remote_code)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
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
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=True)
        self._build_actors()
        self.maker = RolloutMaker(cfg, self.items, self.sampler, self.tokenizer, self.pad_id, self.engines, self.rewards,
                                  (lambda exp: self._logprob_async(self.ref, exp)) if self.ref is not None else None)
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

    # ---------------------------------------------------------------- actors
    def _build_actors(self) -> None:
        from rewards.worker import RewardWorker

        from .policy import PolicyWorker

        cfg, t, r = self.cfg, self.cfg.train, self.cfg.rollout
        gpus = t.actor_num_gpus_per_node
        world = t.actor_num_nodes * gpus if gpus else 1
        threads = threads_for(t.num_threads, 0)  # actors hold no Ray CPUs: one thread unless told
        env = thread_env(threads)
        total_opt_steps = self.total_steps * self.opt_steps_per_rl_step
        port = free_port()
        bundles = gpu_bundles(world, 1 if gpus else 0)
        Policy = [remote_class(PolicyWorker, num_gpus=1 if gpus else 0, bundle=b, env=env) for b in bundles]
        self.policy = ActorGroup([Policy[i].remote(cfg, cfg.model.pretrain, train=True, rank=i, world_size=world,
                                                   master_port=port, total_steps=total_opt_steps, num_threads=threads)
                                  for i in range(world)])
        self.ref = None
        if t.init_kl_coef > 0:
            ref_gpus = t.ref_num_gpus_per_node if gpus else 0
            ref_world = t.actor_num_nodes * ref_gpus if ref_gpus else 1
            ref_port = free_port()
            rb = gpu_bundles(ref_world, 1 if ref_gpus else 0)
            self.ref = ActorGroup([remote_class(PolicyWorker, num_gpus=1 if ref_gpus else 0, bundle=rb[i], env=env).remote(
                cfg, cfg.model.ref_pretrain or cfg.model.pretrain, train=False, rank=i, world_size=ref_world,
                master_port=ref_port, num_threads=threads) for i in range(ref_world)])
        engine_gpus = r.vllm_tensor_parallel_size if gpus else 0
        eb = gpu_bundles(r.vllm_num_engines, engine_gpus)
        kind = r.engine

        def make_engine_actor(i: int):
            kw = {"seed": t.seed + i}
            if kind == "vllm":
                kw.update(tensor_parallel_size=r.vllm_tensor_parallel_size,
                          gpu_memory_utilization=r.vllm_gpu_memory_utilization,
                          enable_prefix_caching=r.enable_prefix_caching, enforce_eager=r.enforce_eager,
                          max_model_len=cfg.data.prompt_max_len + r.generate_max_len,
                          dtype="bfloat16" if cfg.model.bf16 else "float32")
                if r.vllm_enable_sleep:
                    kw["enable_sleep_mode"] = True
            else:
                kw.update(device="cuda" if engine_gpus else "cpu", dtype="bfloat16" if (cfg.model.bf16 and engine_gpus) else "float32",
                          num_threads=threads)
            cls = remote_class(EngineActor, num_gpus=engine_gpus if kind == "hf" else 0, bundle=eb[i], env=env)
            return cls.remote(kind, cfg.model.pretrain, kw)

        self.engines = EngineGroup(make_engine_actor, r.vllm_num_engines, retries=cfg.reward.reward_retries,
                                   current_weights=self._objstore_buckets)
        # async: the engines load a version between rollouts while the policy trains on, so weights
        # go through the object store (an NCCL broadcast would need the training policy's process)
        self.nccl_sync = r.vllm_sync_backend == "nccl" and kind == "vllm" and bool(gpus) and not t.async_train
        if self.nccl_sync:
            self._init_nccl_sync()
        w = cfg.reward
        reward_kwargs = dict(w.reward_kwargs)
        if "tests" in w.reward:
            reward_kwargs["tests"] = {"mode": w.test_reward, "sandbox": cfg.sandbox.to_dict(),
                                      **reward_kwargs.get("tests", {})}
        if "rm" in w.reward:
            reward_kwargs["rm"] = {"model_path": cfg.model.reward_pretrain, "batch_size": w.rm_batch_size,
                                   "normalize": "running" if w.normalize_reward else None,
                                   "clip": t.reward_clip_range, **reward_kwargs.get("rm", {})}
        Reward = remote_class(RewardWorker, num_gpus=0, env=env)
        self.rewards = RewardPool(lambda i: Reward.remote(w.reward, w.reward_weights or None, reward_kwargs),
                                  w.reward_num_actors, w.reward_timeout_s, w.reward_retries)

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

        t0 = time.perf_counter()
        lp_refs = self._logprob_async(self.policy, exp)
        ref_lp = ro.ref_log_probs(exp.num_actions) if self.ref is not None else None
        ref_refs = self._logprob_async(self.ref, exp) if self.ref is not None and ref_lp is None else None
        policy_lp = torch.cat(ray.get(lp_refs), 0)
        exp.ref_log_probs = torch.cat(ray.get(ref_refs), 0) if ref_refs is not None else ref_lp
        timing["logprob"] = time.perf_counter() - t0
        exp.rewards = torch.tensor([res.value for res in results], dtype=torch.float32)
        exp.info["reward_status"] = [res.status for res in results]

        mask = exp.action_mask
        staleness = self.policy_version - ro.weight_version
        gap = float(masked_mean((exp.engine_log_probs - policy_lp).abs(), mask))
        if r.max_logprob_diff and staleness == 0 and gap > r.max_logprob_diff:
            raise StepFailed(f"step {step}: the engines' log-probs differ from the policy's by {gap:.3f} on "
                             f"average (> max_logprob_diff={r.max_logprob_diff}): stale or wrong weights in the "
                             "rollout engines")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        adv, ret = compute_advantages(
            exp.rewards.to(device), policy_lp.to(device),
            exp.ref_log_probs.to(device) if exp.ref_log_probs is not None else None, mask.to(device),
            estimator=t.advantage_estimator, kl_coef=t.init_kl_coef, kl_estimator=t.kl_estimator,
            gamma=t.gamma, group_size=r.n_samples_per_prompt, reward_clip=t.reward_clip_range)
        exp.advantages, exp.returns = adv.cpu(), ret.cpu()
        # the PPO ratio is taken against the policy that sampled: off-policy, that is the engines'
        exp.old_log_probs = exp.engine_log_probs * mask if t.async_train else policy_lp

        t0 = time.perf_counter()
        train_stats = self._train(exp, step)
        timing["train"] = time.perf_counter() - t0
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
        out = {k: sum(s[k] for s in stats) for k in ("policy_loss", "clip_frac", "approx_kl", "entropy")}
        out.update(grad_norm=stats[0]["grad_norm"], lr=stats[0]["lr"])
        return out

    def _objstore_buckets(self) -> list:
        """The policy's weights as object-store refs of CPU buckets (ZeRO-3 gathers bucket by bucket)."""
        per_rank = self.policy.call("weight_buckets_list", None, self.cfg.rollout.weight_sync_bucket_mb << 20)
        return [ray.put(b) for b in per_rank[0]]  # rank 0 holds the gathered tensors

    def _init_nccl_sync(self) -> None:
        """One NCCL group: policy rank 0 (rank 0) and every engine worker (ranks 1..)."""
        tp = self.cfg.rollout.vllm_tensor_parallel_size
        world = 1 + len(self.engines.engines) * tp
        addr, port = ray.get(self.policy.actors[0].sync_endpoint.remote())
        refs = [e.call.remote("init_weight_sync_group", addr, port, 1 + i * tp, world)
                for i, e in enumerate(self.engines.engines)]
        refs.append(self.policy.actors[0].init_weight_sync.remote(addr, port, world))
        ray.get(refs)

    def _sync_weights(self) -> None:
        """Policy -> every engine by NCCL broadcast, in buckets (GPU; the object store otherwise)."""
        ray.get([a.broadcast_weights.remote(self.engines.engines, self.cfg.rollout.weight_sync_bucket_mb)
                 for a in self.policy.actors])
        ray.get([e.finish_weight_update.remote() for e in self.engines.engines])

    def _metrics(self, exp: Experience, results: list[RewardResult], train: dict, timing: dict,
                 gen_tokens: int, stale: float, policy_lp: torch.Tensor) -> dict:
        mask = exp.action_mask
        m: dict = {"reward_mean": float(exp.rewards.mean()), "reward_std": float(exp.rewards.std()) if len(exp) > 1 else 0.0}
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

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, items: list[PromptItem]) -> dict:
        """Greedy pass rate on held-out prompts, through the same engines and rewards as training."""
        r = self.cfg.rollout
        size = max(1, math.ceil(len(items) / len(self.engines.engines)))
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=r.generate_max_len, seed=0)
        chunks = [([list(p.prompt_ids) for p in items[s:s + size]], params) for s in range(0, len(items), size)]
        # a pipeline job with the newest weights: in async mode it runs after the rollouts queued before it
        self._drain()
        job = self.pipeline.run(self.policy_version, lambda: self.maker.generate_scored(items, chunks, "-1", {}))
        results = [res for g in job.result() for res in g.results]
        return {"eval/reward_mean": float(np.mean([res.value for res in results])), **_pass_rates(results, "eval/")}

    def _drain(self) -> list[Rollout]:
        t0 = time.perf_counter()
        out = self.pipeline.drain()
        self._drain_s += time.perf_counter() - t0
        return out

    # ---------------------------------------------------------------- checkpoints
    def save(self) -> None:
        cfg = self.cfg.checkpoint
        in_flight = self._drain()  # async: rollouts generated ahead are saved, not regenerated
        tmp = ckpt.staging_dir(ckpt.ckpt_root(cfg.save_path), self.step)
        self.policy.call("save_checkpoint", None, str(tmp / "policy"), "policy")
        if cfg.save_hf_model:
            self.policy.call("save_hf", None, str(tmp / "hf"), self.cfg.model.pretrain)
        state = {"step": self.step, "sampler": self.sampler.state_dict(), "config": self.cfg.to_dict(),
                 "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
                 "rank_rng": self.policy.call("rng_state"),
                 "ref_rng": self.ref.call("rng_state") if self.ref is not None else None,
                 "counters": {"engine_restarts": self.engines.restarts, "reward_restarts": self.rewards.restarts},
                 "rollouts": in_flight}
        final = ckpt.commit(tmp, ckpt.ckpt_root(cfg.save_path), self.step, state, cfg.max_ckpt_num)
        say(f"[ckpt] step {self.step} saved to {final}")

    def _restore(self, path, state: dict) -> None:
        self.policy.call("load_checkpoint", None, str(path / "policy"), "policy")
        self.policy.call("set_rng_state", [(s,) for s in state["rank_rng"]])
        if self.ref is not None and state.get("ref_rng"):
            self.ref.call("set_rng_state", [(s,) for s in state["ref_rng"]])
        self.sampler.load_state_dict(state["sampler"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        self.step = self.policy_version = int(state["step"])
        self.pipeline.restore(state.get("rollouts") or [])
        say(f"[ckpt] resumed from {path} at step {self.step}")

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


def _pass_rates(results: list[RewardResult], prefix: str) -> dict:
    """pass_rate: share of samples whose program passes every test (pass@1); test_pass_rate: mean
    share of tests passed. Only when a test reward is among the rewards."""
    rates = [res.info.get("tests", {}).get("pass_rate") for res in results]
    if not rates or any(x is None for x in rates):
        return {}
    return {f"{prefix}pass_rate": float(np.mean([x == 1.0 for x in rates])),
            f"{prefix}test_pass_rate": float(np.mean(rates))}


class EngineActor:
    """A rollout engine behind the actor boundary (Ray wraps this class)."""

    def __init__(self, kind: str, model_path: str, kwargs: dict):
        from .engines import make_engine

        threads = kwargs.pop("num_threads", None)
        if threads:
            size_threads(threads)
        self.engine = make_engine(kind, model_path, **kwargs)

    def generate(self, prompts, params):
        return self.engine.generate(prompts, params)

    def load_weights(self, bucket):
        self.engine.load_weights(bucket)

    def finish_weight_update(self):
        self.engine.finish_weight_update()

    def sleep(self):
        self.engine.sleep()

    def wake_up(self):
        self.engine.wake_up()

    def receive_bucket(self, meta):
        self.engine.receive_bucket(meta)

    def close(self):
        getattr(self.engine, "close", lambda: None)()

    def call(self, method: str, *args):
        """Engine-specific calls (e.g. vLLM's init_weight_sync_group) without widening this class."""
        return getattr(self.engine, method)(*args)

    def ping(self):
        return True
