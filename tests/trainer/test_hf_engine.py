"""TransformersEngine against independent references on tiny random Qwen2 models.

The references never use a KV cache or padding: each sequence gets its own full forward pass, so a
slip in the engine's left padding, position ids, cache handling or row dropping shows up here.
"""
from __future__ import annotations

import shutil

import pytest
import torch

from trainer.algorithms import log_probs_from_logits
from trainer.engines.base import SamplingParams
from trainer.engines.hf_engine import TransformersEngine, sample_next, top_p_filter
from trainer.tiny import build_tiny_qwen2, build_tokenizer

PROMPTS = ["def add(a, b):", "x", "class Stack:\n    def __init__(self):\n        self.items = []\n",
           "assert is_even(4) is True and add(1, 2) == 3"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tok = build_tokenizer(str(root / "tok"))
    build_tiny_qwen2(str(root / "a"), tokenizer=tok, seed=0)
    build_tiny_qwen2(str(root / "b"), tokenizer=tok, seed=1)
    return {"a": str(root / "a"), "b": str(root / "b"), "tok": tok}


@pytest.fixture(scope="module")
def engine(models):
    return TransformersEngine(models["a"])


@pytest.fixture(scope="module")
def prompts(models):
    ids = [models["tok"].encode(p) for p in PROMPTS]
    assert len({len(p) for p in ids}) == len(ids), "prompts must differ in length to exercise padding"
    return ids


def teacher_forced(model, prompt, response, temperature):
    """log p(response | prompt) from one unpadded full forward pass (the trainer's recomputation)."""
    ids = torch.tensor([list(prompt) + list(response)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1]
    return log_probs_from_logits(logits, torch.tensor(response), temperature)


def greedy_reference(model, prompt, max_new_tokens, stop_ids):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
            if ids[-1] in stop_ids:
                break
    return ids[len(prompt):]


def test_shapes_grouping_and_lengths(engine, prompts):
    out = engine.generate(prompts, SamplingParams(n=3, max_new_tokens=7, seed=0))
    assert [(c.prompt_index, c.sample_index) for c in out] == [(i, s) for i in range(4) for s in range(3)]
    for c in out:
        assert c.prompt_ids == tuple(prompts[c.prompt_index])
        assert len(c.logprobs) == len(c.response_ids) and 1 <= len(c.response_ids) <= 7
        assert all(lp <= 0 for lp in c.logprobs)
        if c.finish_reason == "length":
            assert len(c.response_ids) == 7
        else:
            assert c.finish_reason == "stop" and c.response_ids[-1] in engine.eos_token_ids
    empty = engine.generate(prompts[:2], SamplingParams(n=2, max_new_tokens=0))
    assert [c.response_ids for c in empty] == [()] * 4


def test_seeded_sampling_is_deterministic(models, engine, prompts):
    params = SamplingParams(n=2, max_new_tokens=12, seed=123)
    first, second = engine.generate(prompts, params), engine.generate(prompts, params)
    assert first == second
    other = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=12, seed=124))
    assert [c.response_ids for c in other] != [c.response_ids for c in first]
    # Without params.seed the engine's own generator runs on: two engines seeded alike agree.
    e1, e2 = TransformersEngine(models["a"], seed=7), TransformersEngine(models["a"], seed=7)
    unseeded = SamplingParams(max_new_tokens=10)
    assert e1.generate(prompts, unseeded) == e2.generate(prompts, unseeded)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.9)])
def test_logprobs_equal_teacher_forced(engine, prompts, temperature, top_p):
    out = engine.generate(prompts, SamplingParams(n=2, temperature=temperature, top_p=top_p,
                                                  max_new_tokens=16, seed=5))
    for c in out:
        ref = teacher_forced(engine.model, c.prompt_ids, c.response_ids, temperature)
        torch.testing.assert_close(torch.tensor(c.logprobs), ref, rtol=0, atol=1e-4)


def test_greedy_equals_full_forward_argmax(engine, prompts):
    out = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=12))
    for c in out:
        assert list(c.response_ids) == greedy_reference(engine.model, c.prompt_ids, 12, engine.eos_token_ids)
        ref = teacher_forced(engine.model, c.prompt_ids, c.response_ids, 1.0)
        torch.testing.assert_close(torch.tensor(c.logprobs), ref, rtol=0, atol=1e-4)


def test_rows_that_stop_early_leave_the_batch_cleanly(engine, prompts):
    """Many stop tokens: rows finish at different steps, so finished rows are dropped mid-batch."""
    stop = tuple(range(300, 340))
    out = engine.generate(prompts, SamplingParams(n=4, max_new_tokens=16, seed=2, stop_token_ids=stop))
    reasons = [c.finish_reason for c in out]
    assert "stop" in reasons and "length" in reasons
    assert len({len(c.response_ids) for c in out}) > 2
    for c in out:
        assert not set(c.response_ids[:-1]) & set(stop)
        assert (c.finish_reason == "stop") == (c.response_ids[-1] in stop)
        ref = teacher_forced(engine.model, c.prompt_ids, c.response_ids, 1.0)
        torch.testing.assert_close(torch.tensor(c.logprobs), ref, rtol=0, atol=1e-4)
    greedy = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=16, stop_token_ids=stop))
    for c in greedy:
        assert list(c.response_ids) == greedy_reference(engine.model, c.prompt_ids, 16,
                                                        engine.eos_token_ids | set(stop))


def test_chunking_by_max_batch_tokens_changes_nothing_greedy(models, engine, prompts):
    small = TransformersEngine(models["a"], max_batch_tokens=40)  # one or two rows per chunk
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=10)
    big, chunked = engine.generate(prompts, params), small.generate(prompts, params)
    assert [c.response_ids for c in big] == [c.response_ids for c in chunked]
    for a, b in zip(big, chunked):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), rtol=0, atol=1e-5)


def test_stops_on_stop_token_ids_and_on_generation_config_eos(models, engine, prompts, tmp_path):
    greedy = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=12))
    full = greedy[0].response_ids
    assert greedy[0].finish_reason == "length" and len(full) == 12
    stop = full[4]
    cut = full.index(stop) + 1
    out = engine.generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=12, stop_token_ids=(stop,)))
    assert out[0].response_ids == full[:cut] and out[0].finish_reason == "stop"

    # An eos listed only in generation_config.json (as Qwen lists <|endoftext|>) also stops.
    from transformers import GenerationConfig

    path = tmp_path / "eos_model"
    shutil.copytree(models["a"], path)
    cfg = GenerationConfig.from_pretrained(path)
    cfg.eos_token_id = [models["tok"].eos_token_id, stop]
    cfg.save_pretrained(path)
    eos_engine = TransformersEngine(str(path))
    assert models["tok"].eos_token_id in eos_engine.eos_token_ids
    out = eos_engine.generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=12))
    assert out[0].response_ids == full[:cut] and out[0].finish_reason == "stop"


def test_tiny_top_p_behaves_greedily(engine, prompts):
    greedy = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=10))
    nucleus = engine.generate(prompts, SamplingParams(n=2, temperature=1.0, top_p=1e-6, max_new_tokens=10, seed=3))
    for c in nucleus:
        g = greedy[c.prompt_index]
        assert c.response_ids == g.response_ids
        torch.testing.assert_close(torch.tensor(c.logprobs), torch.tensor(g.logprobs), rtol=0, atol=1e-5)


def test_load_weights_switches_to_the_other_model(models, prompts):
    from transformers import AutoModelForCausalLM

    engine = TransformersEngine(models["a"])
    model_b = AutoModelForCausalLM.from_pretrained(models["b"])
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    before = engine.generate(prompts, greedy)
    want = TransformersEngine(models["b"]).generate(prompts, greedy)
    assert [c.response_ids for c in before] != [c.response_ids for c in want]

    named = list(model_b.named_parameters())
    engine.load_weights(named[: len(named) // 2])  # two buckets, as a sync would send them
    engine.load_weights(named[len(named) // 2:])
    engine.finish_weight_update()
    assert [c.response_ids for c in engine.generate(prompts, greedy)] == [c.response_ids for c in want]
    for c in engine.generate(prompts, SamplingParams(n=2, max_new_tokens=12, seed=9)):
        ref = teacher_forced(model_b, c.prompt_ids, c.response_ids, 1.0)
        torch.testing.assert_close(torch.tensor(c.logprobs), ref, rtol=0, atol=1e-4)


def test_load_weights_tied_names_and_errors(models):
    engine = TransformersEngine(models["a"])
    embed = engine.model.get_input_embeddings().weight
    new = torch.randn_like(embed)
    engine.load_weights([("lm_head.weight", new)])  # tied: the embedding changes too
    assert torch.equal(embed, new)
    with pytest.raises(KeyError, match="model.layers.0.mlp.nope"):
        engine.load_weights([("model.layers.0.mlp.nope", torch.zeros(1))])
    with pytest.raises(ValueError, match="shape"):
        engine.load_weights([("model.norm.weight", torch.zeros(3))])


def test_invalid_params_are_rejected(engine, prompts):
    for bad in (SamplingParams(top_p=0.0), SamplingParams(temperature=-1.0), SamplingParams(n=0)):
        with pytest.raises(ValueError):
            engine.generate(prompts, bad)
    with pytest.raises(ValueError, match="empty"):
        engine.generate([[]], SamplingParams())


def test_top_p_filter_keeps_smallest_nucleus():
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]])
    assert torch.equal(top_p_filter(probs, 0.55), torch.tensor([[0.0, 0.5, 0.3], [0.0, 0.6, 0.0]]))
    assert torch.equal(top_p_filter(probs[:1], 0.5), torch.tensor([[0.0, 0.5, 0.0]]))
    assert torch.equal(top_p_filter(probs, 1.0), probs)


def test_sample_next_follows_the_tempered_nucleus_distribution():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0]).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    for temperature, top_p in [(0.5, 1.0), (1.0, 1.0), (1.0, 0.8)]:
        token, logp = sample_next(logits, temperature, top_p, gen)
        p = torch.softmax(logits[0] / temperature, -1)
        torch.testing.assert_close(logp, p.log()[token])  # pre-truncation log-probs
        if top_p < 1:
            p = top_p_filter(p[None], top_p)[0]
            p = p / p.sum()
        freq = torch.bincount(token, minlength=4).float() / len(token)
        torch.testing.assert_close(freq, p, rtol=0, atol=0.015)
