"""RMReward: scores the extracted program with the RM, no-code and NaN rules, checkpointable stats."""
from __future__ import annotations

import math

import pytest

from rewards.base import Sample
from rewards.reward_model import RewardModel
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


def test_running_normalisation_state_round_trips(rm_dir):
    samples = _samples()
    a = RMReward(rm_dir, normalize="running", clip=10.0, device="cpu")
    a.score(samples[:4])
    state = a.state_dict()
    assert state["stats"]["count"] == 4
    b = RMReward(rm_dir, normalize="running", clip=10.0, device="cpu")
    fresh = b.score(samples[4:])
    b.load_state_dict(state)
    assert [r.value for r in b.score(samples[4:])] == pytest.approx([r.value for r in a.score(samples[4:])])
    assert [r.value for r in fresh] != pytest.approx([r.value for r in a.score(samples[4:])])


def test_loaded_by_name_through_the_reward_worker(rm_dir):
    assert load_reward_class("rm") is RMReward
    # What trainer/controller.py passes for --reward rm.
    kwargs = {"rm": {"model_path": rm_dir, "batch_size": 2, "normalize": None, "clip": 10.0}}
    worker = RewardWorker(["rm"], None, kwargs)
    try:
        out = worker.score(_samples()[:2])
    finally:
        worker.close()
    assert [r.status for r in out] == ["ok", "ok"] and out[0].info["rm"]["status"] == "ok"
    with pytest.raises(ValueError, match="reward_pretrain"):
        RMReward("")
