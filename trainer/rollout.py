"""Rollouts as values, dynamic sampling, and the pipeline that runs them ahead of training.

A ``Rollout`` is one step's generated and scored samples plus the policy version the engines sampled
with. Everything the engines and reward actors do (rollouts, evaluations, loading a weight version)
runs as a job of one ``RolloutPipeline``: in order, on one thread, so the same jobs always see the
same weights and the same data order (exact resume depends on it).

    sync:  the controller runs each job itself, and the step's rollout uses the newest weights.
    async: rollout k+q is queued when step k starts (q = --async_queue_size) and samples with the
           weights of step k-1; it generates while the policy trains on step k.

Dynamic sampling (``informative_groups``): a prompt group whose rewards all agree gives zero
advantage under a group baseline, so it is dropped (a test of the standard deviation, not of the
mean, so continuous rewards that agree are caught too) and more prompts are generated until the
step has ``rollout_batch_size`` informative groups or the round cap is reached.
"""
from __future__ import annotations

import math
import statistics
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable

from rewards.base import RewardResult

from .engines.base import Completion
from .experience import PromptItem


@dataclass
class Group:
    """One prompt and its n samples with their rewards."""

    prompt: PromptItem
    completions: list[Completion]
    results: list[RewardResult]
    ref_log_probs: list | None = None  # async: the frozen reference's, one 1-D tensor per completion

    @property
    def rewards(self) -> list[float]:
        return [r.value for r in self.results]


@dataclass
class Rollout:
    step: int
    groups: list[Group]
    weight_version: int  # the policy version (number of updates) the engines sampled with
    timing: dict[str, float] = field(default_factory=dict)  # generate, reward_wait, sync, wake, sleep
    rounds: int = 1  # generation rounds (more than 1: dynamic sampling refilled the batch)
    dropped_frac: float = 0.0  # share of generated groups dropped by dynamic sampling
    zero_std_groups_trained: int = 0  # zero-variance groups kept because the round cap was hit

    @property
    def prompts(self) -> list[PromptItem]:
        return [g.prompt for g in self.groups]

    @property
    def completions(self) -> list[Completion]:
        """Grouped by prompt, prompt_index pointing into ``prompts``."""
        return [replace(c, prompt_index=i) for i, g in enumerate(self.groups) for c in g.completions]

    @property
    def results(self) -> list[RewardResult]:
        return [r for g in self.groups for r in g.results]

    def ref_log_probs(self, num_actions: int):
        """[N, num_actions] reference log-probs, right-padded like ``build_experience``; None when
        the job did not compute them."""
        import torch

        if any(g.ref_log_probs is None for g in self.groups):
            return None
        rows = [lp for g in self.groups for lp in g.ref_log_probs]
        out = torch.zeros((len(rows), num_actions), dtype=torch.float32)
        for i, lp in enumerate(rows):
            out[i, :len(lp)] = lp
        return out


def has_signal(rewards: list[float], reward_range: list[float] | tuple = ()) -> bool:
    """Rewards of one group carry signal: nonzero standard deviation and, with a range (LOW, HIGH),
    a mean strictly inside it (OpenRLHF's range test)."""
    if len(rewards) < 2 or statistics.pstdev(rewards) <= 1e-8:
        return False
    if reward_range:
        low, high = reward_range
        return low < statistics.fmean(rewards) < high
    return True


def informative_groups(groups: list[Group], want: int, reward_range=()) -> tuple[list[Group], list[Group]]:
    """(kept, dropped): the first ``want`` groups with signal, in order; and every group without."""
    kept = [g for g in groups if has_signal(g.rewards, reward_range)]
    dropped = [g for g in groups if not has_signal(g.rewards, reward_range)]
    return kept[:want], dropped


def refill_size(want: int, kept: int, seen: int) -> int:
    """Prompts to draw next round: the deficit scaled up by the share of groups kept so far (a full
    batch when nothing was kept), at most one batch."""
    deficit = want - kept
    if kept == 0:
        return want
    return min(want, max(1, math.ceil(deficit * seen / kept)))


def fill_rollout(step: int, version: int, draw: Callable[[int, int], list[Group]], want: int,
                 filtering: bool, max_rounds: int, reward_range=()) -> Rollout:
    """Generate rounds of ``draw(round, n_prompts)`` until ``want`` groups carry signal (or, without
    filtering, once). At the round cap, zero-variance groups fill the batch up to ``want``."""
    groups = draw(0, want)
    if not filtering:
        return Rollout(step, groups, version)
    kept, dropped = informative_groups(groups, want, reward_range)
    seen, rounds = len(groups), 1
    while len(kept) < want and rounds < max_rounds:
        more = draw(rounds, refill_size(want, len(kept), seen))
        seen, rounds = seen + len(more), rounds + 1
        k, d = informative_groups(more, want - len(kept), reward_range)
        kept, dropped = kept + k, dropped + d
    filler = dropped[:want - len(kept)]
    zero_std = sum(1 for g in filler if not has_signal(g.rewards))
    return Rollout(step, kept + filler, version, rounds=rounds, dropped_frac=len(dropped) / seen,
                   zero_std_groups_trained=zero_std)


class RolloutPipeline:
    """Runs engine jobs in submission order on one thread (async), or at once (sync). Each job
    names the weight version it needs, published before the job is submitted. With ``wake`` and
    ``sleep`` (colocated engines), each job is: wake the engines, load the version, run, sleep."""

    def __init__(self, load_version: Callable[[int], float], asynchronous: bool,
                 wake: Callable[[], None] | None = None, sleep: Callable[[], None] | None = None):
        self.load_version = load_version  # brings the engines to a version, returns seconds spent
        self.asynchronous = asynchronous
        self.wake, self.sleep = wake, sleep
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout") if asynchronous else None
        self.in_flight: dict[int, Future] = {}  # step -> Future[Rollout]

    def run(self, version: int, job: Callable[[], object]) -> Future:
        def work():
            t0 = time.perf_counter()
            if self.wake is not None:
                self.wake()
            t1 = time.perf_counter()
            sync_s = self.load_version(version)
            out = job()
            t2 = time.perf_counter()
            if self.sleep is not None:
                self.sleep()
            if isinstance(out, Rollout):
                out.timing["sync"] = sync_s
                if self.wake is not None:
                    out.timing.update(wake=t1 - t0, sleep=time.perf_counter() - t2)
            return out

        if self._pool is not None:
            return self._pool.submit(work)
        done: Future = Future()
        try:
            done.set_result(work())
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits, like the thread's
            done.set_exception(err)
        return done

    def submit_rollout(self, step: int, version: int, job: Callable[[], Rollout]) -> None:
        if step not in self.in_flight:
            self.in_flight[step] = self.run(version, job)

    def restore(self, rollouts: list[Rollout]) -> None:
        """Rollouts that were in flight at a checkpoint, as done jobs."""
        for ro in rollouts:
            done: Future = Future()
            done.set_result(ro)
            self.in_flight[ro.step] = done

    def take(self, step: int) -> Rollout:
        return self.in_flight.pop(step).result()

    def drain(self) -> list[Rollout]:
        """Wait for every rollout in flight (e.g. to checkpoint them); they stay in flight."""
        return [self.in_flight[s].result() for s in sorted(self.in_flight)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
