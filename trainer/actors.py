"""Ray at the edge: the plain worker classes become actors here, in groups the controller drives.

Every fault policy lives here too: a reward call that overruns its deadline yields 0 with status
"timeout" (its actor is replaced); a reward actor or rollout engine that dies is recreated and its
work redone, up to a bounded number of retries, after which the step fails with a clear message.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rewards.base import RewardResult, Sample, failed



class StepFailed(RuntimeError):
    pass


def remote_class(cls: type, num_cpus: float = 0, num_gpus: float = 0, max_restarts: int = 0,
                 bundle: tuple[Any, int] | None = None, env: dict | None = None):
    """``cls`` as a Ray actor class with these resources (optionally pinned to a placement-group bundle)."""
    opts: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": max_restarts}
    if bundle is not None:
        pg, index = bundle
        opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(placement_group=pg,
                                                                       placement_group_bundle_index=index)
    if env:
        opts["runtime_env"] = {"env_vars": env}
    return ray.remote(cls).options(**opts)


def thread_env(threads: int) -> dict[str, str]:
    """Environment that sizes an actor's OpenMP/BLAS pools before torch is imported there."""
    return {var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def gpu_bundles(n: int, gpus_per_bundle: int) -> list[tuple[Any, int]] | list[None]:
    """One placement-group bundle per actor (packed onto as few nodes as possible), or none on CPU."""
    if gpus_per_bundle == 0:
        return [None] * n
    pg = placement_group([{"GPU": gpus_per_bundle, "CPU": 1} for _ in range(n)], strategy="PACK")
    ray.get(pg.ready())
    return [(pg, i) for i in range(n)]


class ActorGroup:
    """Data-parallel ranks of one role (policy or reference): call a method on all, gather results."""

    def __init__(self, actors: list):
        self.actors = actors

    def call(self, method: str, per_rank_args: Sequence[tuple] | None = None, *args: Any, **kw: Any) -> list:
        refs = []
        for i, a in enumerate(self.actors):
            a_args = per_rank_args[i] if per_rank_args is not None else args
            refs.append(getattr(a, method).remote(*a_args, **kw))
        return ray.get(refs)

    def call_async(self, method: str, *args: Any, **kw: Any) -> list:
        return [getattr(a, method).remote(*args, **kw) for a in self.actors]


class EngineGroup:
    """Rollout engines. A dead engine is recreated (then brought to the latest weights) and its
    chunk generated again."""

    def __init__(self, make: Callable[[int], Any], n: int, retries: int = 2,
                 current_weights: Callable[[], list] | None = None):
        self.make, self.retries = make, retries
        self.engines = [make(i) for i in range(n)]
        self.latest_weights: list | None = None  # object refs of the last object-store sync's buckets
        # for a recreated engine when syncs go over NCCL: the policy's weights as object-store buckets
        self.current_weights = current_weights
        self.restarts = 0

    def generate(self, chunks: Sequence[tuple[list, Any]], on_chunk: Callable[[int, list], None] | None = None) -> list:
        """chunks: (prompt ids, SamplingParams); returns completions per chunk, in order. ``on_chunk``
        is called as each chunk finishes (so its rewards can start while others still generate)."""
        pending = {}
        for c, (prompts, params) in enumerate(chunks):
            e = c % len(self.engines)
            pending[c] = (e, self.engines[e], self.engines[e].generate.remote(prompts, params), 0)
        results: dict[int, Any] = {}
        while pending:
            ready, _ = ray.wait([p[2] for p in pending.values()], num_returns=1)
            c = next(k for k, p in pending.items() if p[2] == ready[0])
            e, handle, ref, tries = pending.pop(c)
            try:
                results[c] = ray.get(ref)
                if on_chunk is not None:
                    on_chunk(c, results[c])
            except RayActorError as err:
                if tries >= self.retries:
                    raise StepFailed(f"rollout engine {e} died {tries + 1} times generating chunk {c}: {err}") from None
                if self.engines[e] is handle:  # not yet replaced for another chunk of the same engine
                    self._recreate(e)
                prompts, params = chunks[c]
                pending[c] = (e, self.engines[e], self.engines[e].generate.remote(prompts, params), tries + 1)
        return [results[c] for c in range(len(chunks))]

    def _recreate(self, e: int) -> None:
        try:
            ray.kill(self.engines[e])
        except Exception:  # noqa: BLE001 - it is already dead
            pass
        self.engines[e] = self.make(e)
        self.restarts += 1
        weights = self.latest_weights if self.latest_weights is not None else (
            self.current_weights() if self.current_weights is not None else None)
        if weights is not None:
            ray.get([self.engines[e].load_weights.remote(b) for b in weights])
            ray.get(self.engines[e].finish_weight_update.remote())

    def sleep(self) -> None:
        """Colocated engines free the GPU for training (vLLM sleep level 1: weights offloaded)."""
        ray.get([e.sleep.remote() for e in self.engines])

    def wake_up(self) -> None:
        ray.get([e.wake_up.remote() for e in self.engines])

    def load_weights(self, bucket_refs: list) -> None:
        """Push every bucket to every engine (the object store moves each bucket once per node)."""
        self.latest_weights = bucket_refs
        for e in range(len(self.engines)):
            for attempt in range(self.retries + 1):
                try:
                    ray.get([self.engines[e].load_weights.remote(b) for b in bucket_refs])
                    ray.get(self.engines[e].finish_weight_update.remote())
                    break
                except RayActorError:
                    if attempt == self.retries:
                        raise StepFailed(f"rollout engine {e} died during the weight sync") from None
                    self._recreate(e)


class RewardPool:
    """Reward actors with a deadline per call. Overrun: 0 with status 'timeout' and the actor is
    replaced. Death: the actor is recreated and the same samples scored again (bounded retries)."""

    def __init__(self, make: Callable[[int], Any], n: int, timeout_s: float, retries: int):
        self.make, self.timeout_s, self.retries = make, timeout_s, retries
        self.actors = [make(i) for i in range(n)]
        ray.get([a.ping.remote() for a in self.actors])
        self._next = 0
        self.restarts = 0
        self.timeouts = 0

    def submit(self, samples: list[Sample]) -> dict:
        i = self._next % len(self.actors)
        self._next += 1
        return {"actor": i, "handle": self.actors[i], "ref": self.actors[i].score.remote(samples),
                "samples": samples, "t0": time.monotonic(), "tries": 0}

    def _replace(self, ticket: dict) -> None:
        """Replace the ticket's actor, unless another ticket of the same actor already did."""
        i = ticket["actor"]
        if self.actors[i] is not ticket["handle"]:
            return
        try:
            ray.kill(self.actors[i])
        except Exception:  # noqa: BLE001
            pass
        self.actors[i] = self.make(i)
        self.restarts += 1

    def collect(self, tickets: list[dict]) -> list[list[RewardResult]]:
        out: list[list[RewardResult] | None] = [None] * len(tickets)
        live = dict(enumerate(tickets))
        while live:
            now = time.monotonic()
            wait_s = max(0.0, min(t["t0"] + self.timeout_s for t in live.values()) - now)
            ready, _ = ray.wait([t["ref"] for t in live.values()], num_returns=1, timeout=wait_s)
            for k, t in list(live.items()):
                if ready and t["ref"] == ready[0]:
                    try:
                        res = ray.get(t["ref"])
                        if not isinstance(res, list) or len(res) != len(t["samples"]):
                            raise TypeError(f"reward actor returned {type(res).__name__}")
                        out[k] = res
                    except RayActorError as err:
                        if t["tries"] >= self.retries:
                            raise StepFailed(f"reward actor {t['actor']} died {t['tries'] + 1} times: {err}") from None
                        self._replace(t)
                        live[k] = {**self.submit(t["samples"]), "tries": t["tries"] + 1}
                        continue
                    except (RayTaskError, TypeError, GetTimeoutError) as err:
                        out[k] = failed(len(t["samples"]), "error", str(err))
                    del live[k]
                elif time.monotonic() - t["t0"] >= self.timeout_s:
                    self.timeouts += 1
                    self._replace(t)  # it may be stuck forever: never reuse it
                    out[k] = failed(len(t["samples"]), "timeout", f"no reward within {self.timeout_s} s")
                    del live[k]
        return out  # type: ignore[return-value]
