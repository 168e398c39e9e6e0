"""Colocation (--colocate_all_models --vllm_enable_sleep): the engines sleep while the policy trains
and wake for rollouts, weight syncs and evaluations. On CPU the sequencing is tested with the
transformers engine, which refuses to generate or load weights while it sleeps."""
import pytest
import ray
import torch

from trainer.config import load_config
from trainer.controller import Trainer
from trainer.engines.base import SamplingParams
from trainer.engines.hf_engine import TransformersEngine

from .test_e2e import base_args


def test_a_sleeping_engine_refuses_work_until_woken(tiny_model):
    engine = TransformersEngine(tiny_model, seed=0)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=3, seed=0)
    before = engine.generate([[1, 2, 3]], params)
    weights = [(n, p.detach().clone()) for n, p in engine.model.named_parameters()]
    engine.sleep()
    with pytest.raises(RuntimeError, match="generate\\(\\) while the engine sleeps"):
        engine.generate([[1, 2, 3]], params)
    with pytest.raises(RuntimeError, match="load_weights\\(\\) while the engine sleeps"):
        engine.load_weights(weights[:1])
    engine.wake_up()
    engine.load_weights(weights)
    assert engine.generate([[1, 2, 3]], params) == before  # the weights survived the sleep
    assert all(torch.equal(p, dict(weights)[n]) for n, p in engine.model.named_parameters())


@pytest.mark.slow
def test_colocated_engines_sleep_while_the_policy_trains(ray_local, tiny_model, tiny_records, tmp_path):
    trainer = Trainer(load_config(base_args(tiny_model, tiny_records, tmp_path / "out", "--colocate_all_models",
                                            "--vllm_enable_sleep", "--max_steps", "3",
                                            "--eval_data", tiny_records, "--eval_steps", "2")))
    engine = trainer.engines.engines[0]
    real_train = trainer._train
    asleep_during_train = []

    def train(exp, step):
        try:  # the engine must refuse work now: it sleeps
            ray.get(engine.generate.remote([[1, 2]], SamplingParams(max_new_tokens=1)))
            asleep_during_train.append(False)
        except ray.exceptions.RayTaskError as err:
            asleep_during_train.append("while the engine sleeps" in str(err))
        return real_train(exp, step)

    trainer._train = train
    try:
        history = trainer.fit()  # generation, weight loads and evaluations all needed a woken engine
    finally:
        trainer.close()
    assert asleep_during_train == [True, True, True]
    steps = [h for h in history if "reward_mean" in h]
    assert [h["step"] for h in steps] == [1, 2, 3]
    assert all(h["timing/wake"] >= 0 and h["timing/sleep"] >= 0 for h in steps)
    assert any("eval/pass_rate" in h for h in history if h["step"] == 2)
    assert all(h["engine_policy_logprob_diff"] < 0.01 for h in steps)  # woken engines got the new weights


@pytest.mark.vllm
@pytest.mark.gpu
def test_vllm_sleeps_and_wakes_with_its_weights(tiny_model):
    if not torch.cuda.is_available():
        pytest.skip("vLLM sleep mode (level 1: weights offloaded by its CUDA allocator) needs a GPU: the CPU "
                    "build's worker ignores sleep (v1/worker/cpu_worker.py); the sequencing is tested above "
                    "with the transformers engine")
    pytest.importorskip("vllm")
    from trainer.engines import make_engine

    engine = make_engine("vllm", tiny_model, dtype="float32", gpu_memory_utilization=0.25, enforce_eager=True,
                         max_model_len=256, seed=0, enable_sleep_mode=True)
    try:
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=4, seed=0)
        before = engine.generate([[1, 2, 3]], params)
        free_awake = torch.cuda.mem_get_info()[0]
        engine.sleep()
        assert torch.cuda.mem_get_info()[0] > free_awake  # the weights left the GPU
        engine.wake_up()
        assert engine.generate([[1, 2, 3]], params) == before
    finally:
        engine.close()
