"""VLLMEngine: glue tests that run anywhere, and real-vLLM tests (marked ``vllm``) that need vLLM
0.26 and a CUDA GPU and skip cleanly without them.

The GPU tests compare the engine with an independent reference: the same tiny checkpoint run by
transformers in fp32, teacher-forced on prompt + response (what the trainer recomputes).
"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from trainer.net import free_port
import torch

from trainer.algorithms import log_probs_from_logits
from trainer.engines import make_engine
from trainer.engines.base import SamplingParams
from trainer.engines.vllm_engine import VLLMEngine, WeightSyncWorkerExtension, sampled_logprobs
from trainer.engines.weight_sync import broadcast_buckets
from trainer.tiny import build_tiny_qwen2, build_tokenizer

PROMPTS = ["def add(a, b):", "x", "class Stack:\n    def __init__(self):\n        self.items = []\n"]


# ----------------------------------------------------------------------------- glue, no vLLM needed

class FlatLogprobs(SimpleNamespace):
    """The fields of vllm.logprobs.FlatLogprobs that sampled_logprobs reads."""

    def __len__(self):
        return len(self.start_indices)


def test_sampled_logprobs_reads_both_vllm_formats():
    ids = (5, 9, 5)
    lp = lambda x: SimpleNamespace(logprob=x)  # noqa: E731
    as_dicts = [{5: lp(-0.5)}, {9: lp(-1.5), 2: lp(-0.1)}, {5: lp(-2.0)}]
    assert sampled_logprobs(ids, as_dicts) == (-0.5, -1.5, -2.0)
    flat = FlatLogprobs(start_indices=[0, 1, 3], end_indices=[1, 3, 4], token_ids=[5, 2, 9, 5],
                        logprobs=[-0.5, -0.1, -1.5, -2.0])
    assert sampled_logprobs(ids, flat) == (-0.5, -1.5, -2.0)
    with pytest.raises(RuntimeError, match="log-probs for"):
        sampled_logprobs(ids, None)
    with pytest.raises(RuntimeError, match="no log-prob"):
        sampled_logprobs((5, 7, 5), flat)


class FakeWorker(WeightSyncWorkerExtension):
    """A CPU stand-in for vLLM's GPU worker: records what its model's load_weights receives."""

    def __init__(self):
        self.device = torch.device("cpu")
        self.loaded = []

    def get_model(self):
        return SimpleNamespace(load_weights=lambda weights: self.loaded.extend(
            (n, t.clone()) for n, t in weights))


class FakeLLM:
    """collective_rpc as vLLM's multiprocess client does it: arguments through msgpack, no types."""

    def __init__(self, workers):
        self.workers = workers
        self.msgpack = pytest.importorskip("msgpack")

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        args = self.msgpack.unpackb(self.msgpack.packb(args))
        return [getattr(w, method)(*args, **(kwargs or {})) for w in self.workers]


def test_load_weights_travels_as_bytes_and_reaches_every_worker():
    workers = [FakeWorker(), FakeWorker()]  # two TP ranks
    engine = object.__new__(VLLMEngine)
    engine.llm, engine.weight_sync_timeout_s = FakeLLM(workers), None
    named = [("model.embed_tokens.weight", torch.randn(11, 8).to(torch.bfloat16)),
             ("model.norm.weight", torch.randn(8)), ("model.layers.0.self_attn.q_proj.bias", torch.randn(3))]
    engine.load_weights(named)
    for w in workers:
        assert [n for n, _ in w.loaded] == [n for n, _ in named]
        for (_, got), (_, want) in zip(w.loaded, named):
            assert got.dtype == want.dtype and torch.equal(got, want)


def test_receive_bucket_needs_an_initialised_group():
    with pytest.raises(RuntimeError, match="init_weight_sync_group"):
        FakeWorker().acecoder_receive_bucket(((), 0), "weight_sync")


def test_make_engine_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="vllm"):
        make_engine("sglang", "/nowhere")


# ----------------------------------------------------------------------------- real vLLM on a GPU

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    root = tmp_path_factory.mktemp("tiny_vllm")
    tok = build_tokenizer(str(root / "tok"))
    # head_dim 64: every attention backend supports it.
    for name, seed in (("a", 0), ("b", 1)):
        build_tiny_qwen2(str(root / name), tokenizer=tok, seed=seed, hidden=256, heads=4, kv_heads=2)
    return {"a": str(root / "a"), "b": str(root / "b"), "prompts": [tok.encode(p) for p in PROMPTS]}


@pytest.fixture(scope="module")
def engine(tiny):
    eng = make_engine("vllm", tiny["a"], dtype="float32", gpu_memory_utilization=0.25, enforce_eager=True,
                      max_model_len=512, seed=0)
    yield eng
    eng.close()


def hf_model(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def assert_logprobs_match(model, completions, temperature, atol=2e-3):
    for c in completions:
        ids = torch.tensor([list(c.prompt_ids) + list(c.response_ids)])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(c.prompt_ids) - 1:-1]
        ref = log_probs_from_logits(logits, torch.tensor(c.response_ids), temperature)
        torch.testing.assert_close(torch.tensor(c.logprobs), ref, rtol=0, atol=atol)


@pytest.mark.vllm
@pytest.mark.gpu
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_vllm_samples_grouped_with_trainer_logprobs(tiny, engine, temperature):
    params = SamplingParams(n=3, temperature=temperature, max_new_tokens=16, seed=11)
    out = engine.generate(tiny["prompts"], params)
    assert [(c.prompt_index, c.sample_index) for c in out] == [(i, s) for i in range(3) for s in range(3)]
    for c in out:
        assert c.prompt_ids == tuple(tiny["prompts"][c.prompt_index])
        assert 1 <= len(c.response_ids) <= 16 and len(c.logprobs) == len(c.response_ids)
        assert c.finish_reason == "stop" or len(c.response_ids) == 16
    assert_logprobs_match(hf_model(tiny["a"]), out, temperature)
    again = engine.generate(tiny["prompts"], params)  # seeded: reproducible
    assert [c.response_ids for c in again] == [c.response_ids for c in out]


@pytest.mark.vllm
@pytest.mark.gpu
def test_vllm_greedy_matches_transformers_engine(tiny, engine):
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    ref = make_engine("hf", tiny["a"]).generate(tiny["prompts"], params)
    out = engine.generate(tiny["prompts"], params)
    assert [c.response_ids for c in out] == [c.response_ids for c in ref]
    for a, b in zip(out, ref):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), rtol=0, atol=2e-3)


@pytest.mark.vllm
@pytest.mark.gpu
def test_vllm_load_weights_switches_model(tiny):
    eng = make_engine("vllm", tiny["a"], dtype="float32", gpu_memory_utilization=0.25, enforce_eager=True,
                      max_model_len=512)
    try:
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
        want = make_engine("hf", tiny["b"]).generate(tiny["prompts"], greedy)
        assert [c.response_ids for c in eng.generate(tiny["prompts"], greedy)] != [c.response_ids for c in want]
        named = list(hf_model(tiny["b"]).named_parameters())
        eng.load_weights(named[: len(named) // 2])
        eng.load_weights(named[len(named) // 2:])
        eng.finish_weight_update()
        assert [c.response_ids for c in eng.generate(tiny["prompts"], greedy)] == [c.response_ids for c in want]
        sampled = eng.generate(tiny["prompts"], SamplingParams(n=2, max_new_tokens=12, seed=3))
        assert_logprobs_match(hf_model(tiny["b"]), sampled, 1.0)
    finally:
        eng.close()


@pytest.mark.vllm
@pytest.mark.gpu
def test_vllm_nccl_weight_sync(tiny):
    """Policy rank 0 on cuda:1 broadcasts model B's buckets to an engine on cuda:0."""
    if torch.cuda.device_count() < 2:
        pytest.skip("NCCL needs one GPU per rank: policy and engine need two GPUs")
    from trainer.engines.vllm_engine import init_policy_weight_sync_group

    eng = make_engine("vllm", tiny["a"], dtype="float32", gpu_memory_utilization=0.25, enforce_eager=True,
                      max_model_len=512)
    try:
        port = free_port()
        joiner = threading.Thread(target=eng.init_weight_sync_group, args=("127.0.0.1", port, 1, 2))
        joiner.start()
        group = init_policy_weight_sync_group("127.0.0.1", port, world_size=2, device=1)
        joiner.join()

        def announce(meta):
            t = threading.Thread(target=eng.receive_bucket, args=(meta,))
            t.start()
            return t

        model_b = hf_model(tiny["b"]).to("cuda:1")
        sent = broadcast_buckets(model_b.named_parameters(), group, announce=announce, wait=threading.Thread.join,
                                 bucket_mb=0.25, device="cuda:1")
        assert sent > 1
        eng.finish_weight_update()
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
        want = make_engine("hf", tiny["b"]).generate(tiny["prompts"], greedy)
        assert [c.response_ids for c in eng.generate(tiny["prompts"], greedy)] == [c.response_ids for c in want]
    finally:
        eng.close()
