"""Dynamic sampling and the rollout pipeline, without Ray: plain groups and plain jobs."""
import threading
import time

import pytest

from rewards.base import RewardResult
from trainer.config import ConfigError, load_config
from trainer.engines.base import Completion
from trainer.experience import PromptItem
from trainer.rollout import Group, Rollout, RolloutPipeline, fill_rollout, has_signal, informative_groups, refill_size


def group(uid: str, rewards: list[float]) -> Group:
    p = PromptItem(uid, (1, 2), {"question": uid})
    comps = [Completion(0, i, (1, 2), (3,) * (i + 1), (-0.5,) * (i + 1), "stop") for i in range(len(rewards))]
    return Group(p, comps, [RewardResult(v) for v in rewards])


def test_zero_variance_is_tested_by_the_standard_deviation_not_the_mean():
    assert not has_signal([1.0, 1.0, 1.0])
    assert not has_signal([0.0, 0.0])
    assert not has_signal([0.37, 0.37, 0.37, 0.37])  # continuous rewards that agree: a mean test misses it
    assert has_signal([0.37, 0.38])
    assert has_signal([0.0, 1.0])
    assert not has_signal([0.5])  # a group of one has no variance


def test_the_reward_range_drops_groups_whose_mean_is_outside_it():
    assert has_signal([0.0, 1.0], (0.0, 1.0))
    assert not has_signal([0.0, 1.0], (0.6, 1.0))  # mean 0.5
    assert not has_signal([1.0, 3.0], (0.0, 2.0))  # mean 2: strictly inside only
    kept, dropped = informative_groups([group("a", [1, 1]), group("b", [0, 1]), group("c", [0, 2])], 5, (0.0, 0.9))
    assert [g.prompt.uid for g in kept] == ["b"] and [g.prompt.uid for g in dropped] == ["a", "c"]


def test_refill_draws_the_deficit_scaled_by_the_keep_rate():
    assert refill_size(8, 0, 8) == 8
    assert refill_size(8, 4, 8) == 8  # half kept: the 4 missing need 8 more prompts
    assert refill_size(8, 6, 8) == 3
    assert refill_size(16, 15, 16) == 2


def draw_from(pattern: dict[int, list[list[float]]], calls: list):
    def draw(rnd: int, n: int) -> list[Group]:
        calls.append((rnd, n))
        rewards = pattern[rnd]
        return [group(f"{rnd}.{i}", rewards[i % len(rewards)]) for i in range(n)]

    return draw


def test_refill_rounds_until_the_batch_carries_signal():
    calls = []
    # round 0: half of the groups carry signal; round 1: all of them
    ro = fill_rollout(1, 0, draw_from({0: [[1, 1], [0, 1]], 1: [[0, 1]]}, calls), want=4, filtering=True,
                      max_rounds=4)
    assert calls == [(0, 4), (1, 4)]
    assert len(ro.groups) == 4 and all(has_signal(g.rewards) for g in ro.groups)
    assert [g.prompt.uid for g in ro.groups] == ["0.1", "0.3", "1.0", "1.1"]  # generation order
    assert ro.rounds == 2 and ro.zero_std_groups_trained == 0
    assert ro.dropped_frac == pytest.approx(2 / 8)


def test_the_round_cap_is_kept_and_the_batch_filled_with_zero_variance_groups():
    calls = []
    ro = fill_rollout(1, 0, draw_from({r: [[1, 1, 1]] for r in range(9)}, calls), want=4, filtering=True,
                      max_rounds=3)
    assert len(calls) == 3  # never loops forever
    assert len(ro.groups) == 4 and ro.rounds == 3
    assert ro.zero_std_groups_trained == 4 and ro.dropped_frac == 1.0


def test_without_filtering_one_round_is_used_as_is():
    calls = []
    ro = fill_rollout(1, 0, draw_from({0: [[1, 1]]}, calls), want=3, filtering=False, max_rounds=4)
    assert calls == [(0, 3)] and len(ro.groups) == 3 and ro.rounds == 1 and ro.dropped_frac == 0.0


def test_rollout_flattens_groups_in_order_and_pads_reference_log_probs():
    import torch

    a, b = group("a", [0, 1]), group("b", [1, 0])
    a.ref_log_probs = [torch.tensor([-1.0]), torch.tensor([-1.0, -2.0])]
    b.ref_log_probs = [torch.tensor([-3.0]), torch.tensor([-3.0, -4.0])]
    ro = Rollout(1, [a, b], 0)
    assert [c.prompt_index for c in ro.completions] == [0, 0, 1, 1]
    assert [r.value for r in ro.results] == [0, 1, 1, 0]
    ref = ro.ref_log_probs(3)
    assert ref.tolist() == [[-1, 0, 0], [-1, -2, 0], [-3, 0, 0], [-3, -4, 0]]
    assert Rollout(1, [group("c", [0, 1])], 0).ref_log_probs(3) is None


def test_async_pipeline_runs_jobs_in_order_on_one_thread_with_their_versions():
    loaded, order, threads = [], [], set()

    def load(v):
        loaded.append(v)
        return 0.0

    pipe = RolloutPipeline(load, asynchronous=True)
    gate = threading.Event()

    def job(name, wait=False):
        def run():
            if wait:
                gate.wait(5)
            threads.add(threading.current_thread().name)
            order.append(name)
            return Rollout(int(name[1:]), [], 0)
        return run

    pipe.submit_rollout(1, 0, job("r1", wait=True))
    pipe.submit_rollout(2, 0, job("r2"))
    pipe.submit_rollout(2, 5, job("never"))  # already queued: not queued twice
    time.sleep(0.05)
    assert order == []  # the caller is not blocked while the first job runs
    gate.set()
    evaluation = pipe.run(1, lambda: order.append("eval") or "done")
    assert evaluation.result(5) == "done"
    assert [r.step for r in pipe.drain()] == [1, 2]
    assert pipe.take(1).step == 1 and pipe.take(2).timing["sync"] == 0.0
    assert order == ["r1", "r2", "eval"] and loaded == [0, 0, 1]
    assert len(threads) == 1 and threading.current_thread().name not in threads
    pipe.close()


def test_sync_pipeline_runs_at_once_and_keeps_errors_for_the_taker():
    seq = []
    pipe = RolloutPipeline(lambda v: 0.0, asynchronous=False, wake=lambda: seq.append("wake"),
                           sleep=lambda: seq.append("sleep"))
    pipe.submit_rollout(1, 0, lambda: seq.append("generate") or Rollout(1, [], 0))
    assert seq == ["wake", "generate", "sleep"]
    assert set(pipe.take(1).timing) == {"sync", "wake", "sleep"}

    def boom():
        raise RuntimeError("engine died")

    pipe.submit_rollout(2, 0, boom)
    with pytest.raises(RuntimeError, match="engine died"):
        pipe.take(2)


def test_options_and_their_openrlhf_aliases():
    base = ["--pretrain", "m"]
    cfg = load_config(base + ["--train.async_enable", "--async_queue_size", "2", "--algo.dynamic_filtering_enable",
                              "true", "--dynamic_filtering_reward_range", "0", "1", "--train.colocate_all",
                              "--vllm_enable_sleep", "--num_threads", "3", "--train.async_enable", "false"])
    assert not cfg.train.async_train and cfg.train.async_queue_size == 2 and cfg.train.num_threads == 3
    assert cfg.rollout.dynamic_filtering and cfg.rollout.dynamic_filtering_reward_range == [0.0, 1.0]
    assert cfg.train.colocate_all_models and cfg.rollout.vllm_enable_sleep
    assert load_config(base + ["--async_train"]).train.async_train
    assert load_config(base + ["--reward", "tests,rm", "--reward_pretrain", "x"]).reward.reward == ["tests", "rm"]
    with pytest.raises(ConfigError, match="--dynamic_filtering_reward_range: give two numbers LOW < HIGH"):
        load_config(base + ["--dynamic_filtering_reward_range", "1", "0"])
    with pytest.raises(ConfigError, match="--async_train: cannot overlap"):
        load_config(base + ["--async_train", "--colocate_all_models"])
    with pytest.raises(ConfigError, match="--vllm_enable_sleep: engines only sleep"):
        load_config(base + ["--vllm_enable_sleep"])


def test_a_colocated_reference_needs_as_many_gpus_as_the_policy():
    base = ["--pretrain", "m", "--actor_num_gpus_per_node", "4", "--ref_num_gpus_per_node", "2"]
    with pytest.raises(ConfigError, match="--ref_num_gpus_per_node: must equal --actor_num_gpus_per_node"):
        load_config(base)
    assert not load_config(base + ["--colocate_actor_ref", "false"]).train.colocate_actor_ref
    load_config(base + ["--init_kl_coef", "0"])  # no reference model
    load_config(["--pretrain", "m", "--ref_num_gpus_per_node", "0"])  # a CPU reference shares nothing


def test_yaml_takes_the_dotted_groups_of_openrlhf(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("pretrain: m\ntrain:\n  async_enable: true\nalgo:\n  dynamic_filtering_enable: true\n"
                    "algo.dynamic_filtering_range: [0.1, 0.9]\n")
    cfg = load_config(["--config", str(path)])
    assert cfg.train.async_train and cfg.rollout.dynamic_filtering
    assert cfg.rollout.dynamic_filtering_reward_range == [0.1, 0.9]
    path.write_text("pretrain: m\nalgo:\n  no_such_thing: 1\n")
    with pytest.raises(ConfigError, match="unknown option algo.no_such_thing"):
        load_config(["--config", str(path)])
