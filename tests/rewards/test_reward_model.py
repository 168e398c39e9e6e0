"""RewardModel: where the head reads, what it loads, what it writes; the Bradley-Terry loss."""
from __future__ import annotations

import json
import logging
import math
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rewards.reward_model import (MARKER_FILE, RewardModel, bradley_terry_loss, encode_for_scoring,
                                  format_for_scoring, pad_batch)
from tests.rewards.synthetic import make_pairs


@pytest.fixture(scope="module")
def tok(tiny_lm):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_lm)


def _seqs(tok, n=4):
    pairs = make_pairs()[:n]
    # Different lengths on purpose: the constant-return programs are shorter.
    return [encode_for_scoring(tok, p["prompt"], p[k]) for p in pairs for k in ("chosen", "rejected")]


def test_head_reads_last_non_pad_token_left_and_right(tiny_lm, tok):
    torch.manual_seed(0)
    rm = RewardModel.from_pretrained(tiny_lm).eval()
    seqs = _seqs(tok)
    assert len({len(s) for s in seqs}) > 1
    alone = torch.stack([rm(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long))[0] for s in seqs])
    for side in ("right", "left"):
        ids, mask = pad_batch(seqs, tok.pad_token_id, side=side)
        torch.testing.assert_close(rm(ids, mask), alone, rtol=1e-5, atol=1e-5)
    # The reference is not trivially constant: different sequences score differently.
    assert alone.std() > 0


def test_scoring_input_is_chat_template_and_truncates_from_the_left(tok):
    text = format_for_scoring(tok, "Q?", "def f(): pass")
    assert text == tok.apply_chat_template([{"role": "user", "content": "Q?"},
                                            {"role": "assistant", "content": "def f(): pass"}], tokenize=False)
    full = encode_for_scoring(tok, "a long question " * 20, "def f():\n    return 1\n")
    cut = encode_for_scoring(tok, "a long question " * 20, "def f():\n    return 1\n", max_length=16)
    assert len(cut) == 16 and cut == full[-16:]
    assert tok.decode(cut).endswith("def f():\n    return 1\n")  # the answer survives whole


def _acecoderm_checkpoint(src: str, dst: str, head_w: torch.Tensor, head_b: torch.Tensor) -> dict:
    """The released AceCodeRM layout: Qwen2ForCausalLM keys (model.*, lm_head) + v_head.summary.*,
    sharded over two safetensors files with an index, head in the second shard."""
    from transformers import AutoConfig, AutoTokenizer, Qwen2ForCausalLM

    cfg = AutoConfig.from_pretrained(src)
    cfg.tie_word_embeddings = False  # as in the 7B release: lm_head.weight is in the files
    torch.manual_seed(1)
    lm = Qwen2ForCausalLM(cfg)
    sd = {k: v.contiguous() for k, v in lm.state_dict().items()}
    assert "lm_head.weight" in sd and any(k.startswith("model.") for k in sd)
    keys = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]
              + ["v_head.summary.weight", "v_head.summary.bias"]}
    sd["v_head.summary.weight"], sd["v_head.summary.bias"] = head_w, head_b
    os.makedirs(dst, exist_ok=True)
    for name, ks in shards.items():
        save_file({k: sd[k] for k in ks}, os.path.join(dst, name), metadata={"format": "pt"})
    index = {"metadata": {"total_size": 0}, "weight_map": {k: n for n, ks in shards.items() for k in ks}}
    with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    cfg.architectures = ["Qwen2ForCausalRM"]
    cfg.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return {"lm": lm.eval(), "sd": sd}


def test_loads_released_acecoderm_layout(tiny_lm, tok, tmp_path):
    hidden = json.load(open(os.path.join(tiny_lm, "config.json")))["hidden_size"]
    w = torch.linspace(-1, 1, hidden).reshape(1, hidden)
    b = torch.tensor([0.25])
    ref = _acecoderm_checkpoint(tiny_lm, str(tmp_path / "acecoderm"), w, b)
    rm = RewardModel.from_pretrained(str(tmp_path / "acecoderm")).eval()
    assert torch.equal(rm.v_head.summary.weight, w) and torch.equal(rm.v_head.summary.bias, b)
    for k, v in rm.model.state_dict().items():
        assert torch.equal(v, ref["sd"]["model." + k]), k
    # Score as the AceCodeRM code does: hidden_states[-1] of the causal LM at mask.sum - 1 (right pad).
    seqs = _seqs(tok)
    ids, mask = pad_batch(seqs, tok.pad_token_id, side="right")
    with torch.no_grad():
        h = ref["lm"](input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        expected = (h[torch.arange(len(seqs)), mask.sum(-1) - 1] @ w.T + b).squeeze(-1)
        torch.testing.assert_close(rm(ids, mask), expected, rtol=1e-5, atol=1e-5)


def test_plain_causal_lm_gets_a_fresh_head_and_says_so(tiny_lm, caplog):
    with caplog.at_level(logging.WARNING, logger="rewards.reward_model"):
        rm = RewardModel.from_pretrained(tiny_lm)
    assert "initialised a fresh one" in caplog.text
    w = rm.v_head.summary.weight
    assert w.abs().max() > 0 and w.std() < 0.1 and torch.equal(rm.v_head.summary.bias, torch.zeros(1))


def test_save_load_round_trip(tiny_lm, tok, tmp_path):
    torch.manual_seed(3)
    rm = RewardModel.from_pretrained(tiny_lm).eval()
    rm.v_head.summary.bias.data.fill_(0.5)
    rm.save_pretrained(str(tmp_path / "rm"))
    assert json.load(open(tmp_path / "rm" / MARKER_FILE))["head"] == "v_head.summary"
    with safe_open(str(tmp_path / "rm" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    # The AceCodeRM key layout, so other loaders of released checkpoints read ours.
    assert {"v_head.summary.weight", "v_head.summary.bias"} <= keys
    assert all(k.startswith(("model.", "v_head.summary.")) for k in keys) and "lm_head.weight" not in keys
    back = RewardModel.from_pretrained(str(tmp_path / "rm")).eval()
    a, b = rm.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    seqs = _seqs(tok, 2)
    torch.testing.assert_close(back.score(seqs, tokenizer=tok), rm.score(seqs, tokenizer=tok))
    texts = [format_for_scoring(tok, "Q", "def f(): pass"), format_for_scoring(tok, "Q", "x = 1")]
    torch.testing.assert_close(back.score(texts, tokenizer=tok),
                               torch.stack([back.score([t], tokenizer=tok)[0] for t in texts]))


def test_marked_reward_model_without_head_is_an_error(tiny_lm, tmp_path):
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tiny_lm).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / MARKER_FILE).write_text("{}")
    with pytest.raises(ValueError, match="v_head.summary.weight"):
        RewardModel.from_pretrained(str(tmp_path / "m"))


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([1.0, 0.0, 3.0]), torch.tensor([0.0, 2.0, 3.0])
    # -log sigmoid(d) = log(1 + exp(-d)) for d = 1, -2, 0
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2)) + math.log(2)) / 3
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, rel=1e-6)
    loss = bradley_terry_loss(chosen.bfloat16(), rejected.bfloat16())
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected, rel=1e-6)
