"""RMReward: scores the extracted program with the RM, no-code and NaN rules; the driver's normalisation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rewards.base import Sample
from rewards.reward_model import RewardModel
from common.extract import extract_code
from rewards.rm_reward import RMReward
from rewards.rm_scorer import RMScorer
from rewards.worker import RewardWorker, load_reward_class
from tests.rewards.synthetic import make_pairs


@pytest.fixture(scope="module")
def rm_dir(tiny_rm):
    return tiny_rm


def _samples():
    pairs = make_pairs()[:3]
    out = []
    for i, p in enumerate(pairs):
        out.append(Sample(f"s{i}c", p["prompt"], f"Here it is:\n```python\n{p['chosen']}```\nDone.", {}))
        out.append(Sample(f"s{i}r", p["prompt"], f"```python\n{p['rejected']}```", {}))
    return out


def test_scores_the_extracted_program(rm_dir):
    samples = _samples()
    reward = RMReward(rm_dir, normalize=None, clip=None, device="cpu")
    got = reward.score(samples)
    want = RMScorer(rm_dir, device="cpu", clip=None).raw_scores(
        [(p["prompt"], p[k]) for p in make_pairs()[:3] for k in ("chosen", "rejected")])
    assert [r.status for r in got] == ["ok"] * len(samples)
    assert [r.value for r in got] == pytest.approx(want, abs=1e-5)
    assert len({round(v, 4) for v in want}) > 1  # a constant model would prove nothing


def test_no_code_completion_style_and_clip(rm_dir):
    prefix = "def f(u, v):\n    # return the sum of u and v\n    return "
    samples = [Sample("prose", "q", "I cannot answer that.", {}),
               Sample("empty", "q", "", {}),
               Sample("prefix", prefix, "u + v", {"program_prefix": prefix}),
               Sample("fenced", prefix, f"```python\n{prefix}u + v\n```", {})]
    got = RMReward(rm_dir, normalize=None, clip=None, device="cpu", no_code_value=-1.0).score(samples)
    assert [r.status for r in got[:2]] == ["no_code", "no_code"] and got[0].value == got[1].value == -1.0
    # The completion-style sample is scored as prefix + response, the same program as the fenced one.
    assert got[2].status == "ok" and got[2].value == pytest.approx(got[3].value, abs=1e-5)
    clipped = RMReward(rm_dir, normalize=None, clip=1e-3, device="cpu").score(samples[2:])
    assert all(abs(r.value) <= 1e-3 for r in clipped) and abs(got[2].value) > 1e-3


def test_nan_scores_are_errors(tiny_lm, tmp_path):
    from transformers import AutoTokenizer

    bad = str(tmp_path / "nan")
    rm = RewardModel.from_pretrained(tiny_lm)
    rm.v_head.summary.bias.data.fill_(float("nan"))
    rm.save_pretrained(bad)
    AutoTokenizer.from_pretrained(tiny_lm).save_pretrained(bad)
    got = RMReward(bad, device="cpu").score(_samples()[:2] + [Sample("x", "q", "no code here", {})])
    assert [r.status for r in got] == ["error", "error", "no_code"]
    assert all(r.value == 0.0 and math.isfinite(r.value) for r in got)


def _rm_config(**reward):
    from trainer.config import RLConfig

    cfg = RLConfig()
    cfg.reward.reward = ["rm"]
    for k, v in reward.items():
        setattr(cfg.reward, k, v)
    return cfg


def test_running_normalisation_lives_in_the_driver_and_survives_a_replaced_actor(rm_dir):
    from trainer.reward_norm import RewardNormalizer

    with pytest.raises(ValueError, match="normalize_reward"):
        RMReward(rm_dir, normalize="running", device="cpu")  # actor-held statistics would be lost
    samples = _samples()
    kwargs = {"rm": {"model_path": rm_dir, "clip": None, "device": "cpu"}}  # what the controller passes
    cfg = _rm_config(normalize_reward=True)
    raw = RMScorer(rm_dir, device="cpu", clip=None).raw_scores([(s.question, extract_code(s.response))
                                                                for s in samples])

    norm = RewardNormalizer.from_config(cfg)
    first = RewardWorker(["rm"], None, kwargs)
    a = norm(first.score(samples[:4]))
    first.close()  # the actor is replaced (a timeout or a crash): the statistics are not in it
    b = norm(RewardWorker(["rm"], None, kwargs).score(samples[4:]))
    want_a = (np.array(raw[:4]) - np.mean(raw[:4])) / np.std(raw[:4])
    want_b = (np.array(raw[4:]) - np.mean(raw)) / np.std(raw)  # the statistics of every score seen
    assert [r.value for r in a] == pytest.approx(want_a, abs=1e-5)
    assert [r.value for r in b] == pytest.approx(want_b, abs=1e-5)
    assert [r.info["rm"]["raw"] for r in a + b] == pytest.approx(raw, abs=1e-5)

    resumed = RewardNormalizer.from_config(cfg)  # a resumed run: the checkpointed statistics
    resumed.load_state_dict(norm.state_dict())
    again = RewardWorker(["rm"], None, kwargs).score(samples[4:])
    assert [r.value for r in resumed(again)] == pytest.approx([r.value for r in norm(again)])
    assert [r.value for r in RewardNormalizer.from_config(cfg)(again)] != pytest.approx(want_b, abs=1e-3)


def test_loaded_by_name_through_the_reward_worker(rm_dir):
    assert load_reward_class("rm") is RMReward
    # What trainer/controller.py passes for --reward rm (the driver normalises and clips).
    kwargs = {"rm": {"model_path": rm_dir, "batch_size": 2, "clip": None}}
    worker = RewardWorker(["rm"], None, kwargs)
    try:
        out = worker.score(_samples()[:2])
    finally:
        worker.close()
    assert [r.status for r in out] == ["ok", "ok"] and out[0].info["rm"]["status"] == "ok"
    with pytest.raises(ValueError, match="reward_pretrain"):
        RMReward("")
