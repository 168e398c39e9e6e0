"""RMScorer: batching and length-sorting change nothing; normalisation and clipping as specified."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rewards.reward_model import RewardModel
from rewards.rm_scorer import RMScorer
from tests.rewards.synthetic import make_pairs


def _save_rm(src: str, dst: str, bias: float = 0.0, weight_scale: float = 1.0) -> str:
    from transformers import AutoTokenizer

    torch.manual_seed(5)
    rm = RewardModel.from_pretrained(src)
    rm.v_head.summary.weight.data.normal_(std=weight_scale)
    rm.v_head.summary.bias.data.fill_(bias)
    rm.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def rm_dir(tiny_lm, tmp_path_factory):
    return _save_rm(tiny_lm, str(tmp_path_factory.mktemp("rm")))


def _pairs(n=7):
    return [(p["prompt"], p[k]) for p in make_pairs()[:n] for k in ("chosen", "rejected")]


def test_batched_equals_unbatched(rm_dir):
    pairs = _pairs()
    one = RMScorer(rm_dir, device="cpu", batch_size=1, clip=None)
    many = RMScorer(rm_dir, device="cpu", batch_size=5, clip=None)
    a, b = one.score(pairs), many.score(pairs)
    assert isinstance(b[0], float) and len(b) == len(pairs)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    assert np.std(a) > 0  # not a constant function: order would not matter otherwise
    # Same numbers as the model's own forward on each pair alone (input order kept).
    alone = [one.model.score([p], tokenizer=one.tokenizer).item() for p in
             [one.tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a_}],
                                                tokenize=False) for q, a_ in pairs]]
    np.testing.assert_allclose(b, alone, rtol=1e-5, atol=1e-5)


def test_clipping(tiny_lm, tmp_path):
    pairs = _pairs(3)
    hi = _save_rm(tiny_lm, str(tmp_path / "hi"), bias=50.0)
    lo = _save_rm(tiny_lm, str(tmp_path / "lo"), bias=-50.0)
    assert RMScorer(hi, device="cpu").score(pairs) == [10.0] * len(pairs)
    assert RMScorer(lo, device="cpu").score(pairs) == [-10.0] * len(pairs)
    raw = RMScorer(hi, device="cpu", clip=None).score(pairs)
    assert min(raw) > 40 and RMScorer(hi, device="cpu").raw_scores(pairs) == raw
    assert RMScorer(hi, device="cpu", clip=3.0).score(pairs) == [3.0] * len(pairs)


def test_normalisation(rm_dir):
    pairs = _pairs()
    raw = np.array(RMScorer(rm_dir, device="cpu", clip=None).score(pairs))
    fixed = RMScorer(rm_dir, device="cpu", clip=None, normalize=(0.5, 2.0)).score(pairs)
    np.testing.assert_allclose(fixed, (raw - 0.5) / 2.0, rtol=1e-6)
    running = RMScorer(rm_dir, device="cpu", clip=None, normalize="running")
    first = running.score(pairs[:6])
    second = running.score(pairs[6:])
    np.testing.assert_allclose(first, (raw[:6] - raw[:6].mean()) / raw[:6].std(), rtol=1e-5)
    np.testing.assert_allclose(second, (raw[6:] - raw.mean()) / raw.std(), rtol=1e-5)  # stats of all seen
    state = running.stats.state_dict()
    assert state["count"] == len(pairs)


@pytest.mark.parametrize("kwargs, match", [({"normalize": "zscore"}, "normalize"), ({"clip": 0}, "clip"),
                                           ({"batch_size": 0}, "batch_size"), ({"normalize": (0.0, 0.0)}, "normalize")])
def test_bad_arguments(rm_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RMScorer(rm_dir, device="cpu", **kwargs)
