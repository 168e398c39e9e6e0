"""The driver's normalisation of reward-model scores: statistics, clipping, recombination, options."""
import numpy as np
import pytest

from rewards.base import RewardResult, combine, failed
from trainer.config import ConfigError, RLConfig
from trainer.reward_norm import RewardNormalizer


def config(rewards=("tests", "rm"), weights=(1.0, 0.5), **reward):
    cfg = RLConfig()
    cfg.reward.reward, cfg.reward.reward_weights = list(rewards), list(weights)[:len(rewards)]
    for k, v in reward.items():
        setattr(cfg.reward, k, v)
    return cfg


def results(rm: list[RewardResult], tests: list[float]) -> list[RewardResult]:
    """What a reward actor returns for --reward tests,rm --reward_weights 1,0.5."""
    return combine([[RewardResult(v) for v in tests], rm], [1.0, 0.5], ["tests", "rm"])


def test_running_statistics_over_training_batches_then_clip_and_recombine():
    norm = RewardNormalizer.from_config(config(normalize_reward=True))
    raw1, raw2 = [1.0, 3.0, 8.0], [2.0, -4.0]
    out1 = norm(results([RewardResult(v) for v in raw1], [1.0, 0.0, 1.0]))
    z1 = (np.array(raw1) - np.mean(raw1)) / np.std(raw1)
    assert [r.info["rm"]["value"] for r in out1] == pytest.approx(z1)
    assert [r.value for r in out1] == pytest.approx([1.0, 0.0, 1.0] + 0.5 * z1)
    assert [r.info["rm"]["raw"] for r in out1] == raw1 and [r.info["tests"]["value"] for r in out1] == [1.0, 0.0, 1.0]
    out2 = norm(results([RewardResult(v) for v in raw2], [0.0, 0.0]))
    seen = raw1 + raw2
    assert [r.info["rm"]["value"] for r in out2] == pytest.approx((np.array(raw2) - np.mean(seen)) / np.std(seen))
    assert norm.state_dict()["stats"]["count"] == 5


def test_unscored_samples_keep_their_value_and_stay_out_of_the_statistics():
    norm = RewardNormalizer.from_config(config(normalize_reward=True))
    rm = [RewardResult(0.0, "no_code"), RewardResult(5.0), RewardResult(0.0, "error"), RewardResult(7.0)]
    out = norm(results(rm, [1.0, 1.0, 0.0, 0.0]) + failed(1, "timeout", "no reward within 3 s"))
    assert norm.stats.count == 2 and norm.stats.mean == 6.0
    assert [r.value for r in out] == [1.0, 1.0 - 0.5, 0.0, 0.5, 0.0]  # 5 -> -1, 7 -> +1
    assert [r.status for r in out] == ["no_code", "ok", "error", "ok", "timeout"]


def test_an_evaluation_is_scored_with_the_statistics_but_does_not_move_them():
    norm = RewardNormalizer.from_config(config(normalize_reward=True))
    norm(results([RewardResult(v) for v in (0.0, 2.0)], [0, 0]))
    before = norm.state_dict()
    out = norm(results([RewardResult(4.0)], [0]), update=False)
    assert norm.state_dict() == before and out[0].info["rm"]["value"] == pytest.approx(3.0)


def test_without_normalisation_the_scores_are_only_clipped():
    norm = RewardNormalizer.from_config(config(rewards=["rm"]))  # clip: --reward_clip_range (10)
    out = norm(combine([[RewardResult(v) for v in (-30.0, 2.5, 12.0)]], [1.0], ["rm"]))
    assert [r.value for r in out] == [-10.0, 2.5, 10.0] and norm.stats.count == 0
    unclipped = RewardNormalizer.from_config(config(rewards=["rm"], reward_kwargs={"rm": {"clip": None}}))
    assert not unclipped.active
    tests_only = RewardNormalizer.from_config(config(rewards=["tests"], normalize_reward=True))
    rs = [RewardResult(30.0, "ok", {"tests": {"value": 30.0, "status": "ok"}})]
    assert not tests_only.active and tests_only(rs) == rs


def test_reward_kwargs_override_the_options_and_bad_values_name_them():
    cfg = config(reward_kwargs={"rm": {"normalize": "running", "clip": 2.0}})
    norm = RewardNormalizer.from_config(cfg)
    assert norm.running and norm.clip == 2.0
    with pytest.raises(ConfigError, match="rm.normalize"):
        RewardNormalizer.from_config(config(reward_kwargs={"rm": {"normalize": "zscore"}}))
    with pytest.raises(ConfigError, match="rm.clip"):
        RewardNormalizer.from_config(config(reward_kwargs={"rm": {"clip": 0}}))


def test_the_statistics_round_trip():
    a = RewardNormalizer.from_config(config(normalize_reward=True))
    a(results([RewardResult(v) for v in (1.0, 2.0, 6.0)], [0, 0, 0]))
    b = RewardNormalizer.from_config(config(normalize_reward=True))
    b.load_state_dict(a.state_dict())
    batch = results([RewardResult(v) for v in (3.0, -1.0)], [0, 0])
    assert [r.value for r in b(batch)] == [r.value for r in a(batch)]
