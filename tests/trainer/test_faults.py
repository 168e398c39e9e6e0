"""Faults with real processes and real Ray: actors die mid-step and training carries on, within bounds."""
import json
import threading
import time

import pytest
import ray

from trainer.actors import StepFailed
from trainer.config import load_config
from trainer.controller import Trainer

from .test_e2e import base_args

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", [[], ["--async_train"]], ids=["sync", "async"])
def test_a_reward_actor_that_dies_is_restarted_and_its_samples_rescored(ray_local, tiny_model, tiny_records, tmp_path,
                                                                       mode):
    spec = "tests.trainer.plugin_rewards:DiesOnce"
    trainer = Trainer(load_config(base_args(tiny_model, tiny_records, tmp_path / "out", "--reward", spec,
                                            "--reward_kwargs", json.dumps({spec: {"marker": str(tmp_path / "died")}}),
                                            *mode)))
    try:
        history = trainer.fit()
    finally:
        trainer.close()
    assert (tmp_path / "died").exists()
    assert history[0]["reward_actor_restarts"] == 1
    assert history[0]["reward_mean"] == 1.0  # re-scored, not zeroed
    assert history[0].get("reward_status/ok") == 8


def test_a_reward_actor_that_keeps_dying_fails_the_step_clearly(ray_local, tiny_model, tiny_records, tmp_path):
    trainer = Trainer(load_config(base_args(tiny_model, tiny_records, tmp_path / "out", "--reward",
                                            "tests.trainer.plugin_rewards:AlwaysDies", "--reward_retries", "1")))
    try:
        with pytest.raises(StepFailed, match="reward actor .* died 2 times"):
            trainer.fit()
    finally:
        trainer.close()


def test_a_rollout_engine_killed_mid_step_is_recreated_with_the_latest_weights(ray_local, tiny_model, tiny_records,
                                                                              tmp_path):
    trainer = Trainer(load_config(base_args(tiny_model, tiny_records, tmp_path / "out", "--max_steps", "3",
                                            "--generate_max_len", "48", "--max_logprob_diff", "0.01")))
    real_run_step = trainer.run_step

    def run_step(step):
        if step == 2:  # kill the engine's process while it generates
            victim = trainer.engines.engines[0]
            threading.Thread(target=lambda: (time.sleep(0.05), ray.kill(victim, no_restart=True))).start()
        return real_run_step(step)

    trainer.run_step = run_step
    try:
        history = trainer.fit()
    finally:
        trainer.close()
    assert [h["step"] for h in history] == [1, 2, 3]
    assert history[-1]["engine_restarts"] >= 1
    # the recreated engine samples with the policy's current weights (the stale-weights detector
    # would have failed the run otherwise: --max_logprob_diff 0.01)
    assert all(h["engine_policy_logprob_diff"] < 0.01 for h in history)


DETERMINISTIC = ("reward_mean", "policy_loss", "grad_norm", "engine_policy_logprob_diff", "staleness", "kl")


def test_async_an_engine_killed_while_it_generates_ahead_changes_nothing(ray_local, tiny_model, tiny_records,
                                                                        tmp_path):
    """The engine dies while it generates step 3's rollout (with step 1's weights) during step 2's
    training: it is recreated with the weights that rollout needs, so the run is the same as without."""
    args = ["--max_steps", "4", "--generate_max_len", "48", "--async_train"]
    quiet = Trainer(load_config(base_args(tiny_model, tiny_records, tmp_path / "quiet", *args)))
    try:
        expected = quiet.fit()
    finally:
        quiet.close()
    trainer = Trainer(load_config(base_args(tiny_model, tiny_records, tmp_path / "out", *args)))
    real_train = trainer._train

    def train(exp, step):
        if step == 2:  # rollout 3 was queued when step 2 started: kill the engine under it
            victim = trainer.engines.engines[0]
            threading.Thread(target=lambda: (time.sleep(0.02), ray.kill(victim, no_restart=True))).start()
        return real_train(exp, step)

    trainer._train = train
    try:
        history = trainer.fit()
    finally:
        trainer.close()
    assert history[-1]["engine_restarts"] >= 1
    assert [h["staleness"] for h in history] == [0, 1, 1, 1]
    for got, want in zip(history, expected):
        for key in DETERMINISTIC:
            assert got.get(key) == want.get(key), (got["step"], key, got.get(key), want.get(key))
