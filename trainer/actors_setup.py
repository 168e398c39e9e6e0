"""Building a run's actors and moving weights between them: the policy (and reference) groups, the
rollout engines, the reward actors, and the object-store or NCCL paths from the policy to the engines.

``ActorSetup`` is mixed into the controller's ``Trainer`` (trainer/controller.py): it reads
``cfg``, ``total_steps`` and ``opt_steps_per_rl_step`` and sets ``policy``, ``ref``, ``engines``,
``nccl_sync`` and ``rewards``. ``EngineActor`` is the engine class Ray wraps.
"""
from __future__ import annotations

import ray

from common.net import free_port

from .actors import ActorGroup, EngineGroup, RewardPool, gpu_bundles, remote_class, thread_env
from .threads import size_threads, threads_for


class ActorSetup:
    """The Trainer's actor groups and weight transport (see the module docstring for what it reads and sets)."""

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
        ref_gpus = t.ref_num_gpus_per_node if gpus and t.init_kl_coef > 0 else 0
        # --colocate_actor_ref: reference rank i runs on policy rank i's GPU (same bundle, half a GPU
        # each in Ray's accounting); validate() made the two GPU counts equal
        share = 0.5 if t.colocate_actor_ref and ref_gpus else 1
        bundles = gpu_bundles(world, 1 if gpus else 0)
        Policy = [remote_class(PolicyWorker, num_gpus=share if gpus else 0, bundle=b, env=env) for b in bundles]
        self.policy = ActorGroup([Policy[i].remote(cfg, cfg.model.pretrain, train=True, rank=i, world_size=world,
                                                   master_port=port, total_steps=total_opt_steps, num_threads=threads)
                                  for i in range(world)])
        self.ref = None
        if t.init_kl_coef > 0:
            ref_world = t.actor_num_nodes * ref_gpus if ref_gpus else 1
            ref_port = free_port()
            rb = bundles if share < 1 else gpu_bundles(ref_world, 1 if ref_gpus else 0)
            self.ref = ActorGroup([
                remote_class(PolicyWorker, num_gpus=share if ref_gpus else 0, bundle=rb[i], env=env).remote(
                    cfg, cfg.model.ref_pretrain or cfg.model.pretrain, train=False, rank=i, world_size=ref_world,
                    master_port=ref_port, num_threads=threads)
                for i in range(ref_world)])
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
                kw.update(device="cuda" if engine_gpus else "cpu",
                          dtype="bfloat16" if (cfg.model.bf16 and engine_gpus) else "float32", num_threads=threads)
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
        if "rm" in w.reward:  # raw scores: self.reward_norm normalises and clips them in the driver
            rm = {"model_path": cfg.model.reward_pretrain, "batch_size": w.rm_batch_size,
                  **reward_kwargs.get("rm", {}), "clip": None}
            rm.pop("normalize", None)
            reward_kwargs["rm"] = rm
        Reward = remote_class(RewardWorker, num_gpus=0, env=env)
        self.rewards = RewardPool(lambda i: Reward.remote(w.reward, w.reward_weights or None, reward_kwargs),
                                  w.reward_num_actors, w.reward_timeout_s, w.reward_retries)

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
