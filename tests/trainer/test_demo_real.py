"""The real-model loop, two steps on a tiny held-out set: SmolLM2-135M-Instruct through vLLM (CPU
build), the DeepSpeed policy, sandbox rewards on real MBPP prompts. The full run is a benchmark
(``bash launch/demo_real_cpu.sh``); this keeps its path from rotting."""
import json

import pytest

from apps import demo_real

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def test_real_model_loop_two_steps(ray_local, smollm2, data_dir, tmp_path):
    from tests.conftest import vllm_importable

    if (why := vllm_importable()) is not None:
        pytest.skip(why)
    out = tmp_path / "real"
    args = ["--output_dir", str(out), "--max_steps", "2", "--heldout_limit", "2", "--train_limit", "8",
            "--curve_tasks", "2", "--data_dir", str(data_dir), "--",
            "--rollout_batch_size", "2", "--n_samples_per_prompt", "2", "--train_batch_size", "4",
            "--micro_train_batch_size", "2", "--generate_max_len", "48", "--save_steps", "1", "--eval_steps", "2",
            "--progress_bar", "false", "--dynamic_filtering_max_rounds", "2",
            # fp32 policy: the engine/policy log-prob check below is then exact to 1e-3 (bf16 autocast
            # gives ~0.02 on SmolLM2, too close to what a missed sync after one small step would show)
            "--cpu_bf16_autocast", "false"]
    assert demo_real.main(args) == 0
    s = json.loads((out / "summary.json").read_text())
    h = s["heldout"]
    assert s["model"] == "smollm2-135m-instruct" and s["steps"] == 2 and s["seconds"] > 0
    assert h["n"] == 4 and set(h["per_set"]) == {"mbpp", "humanevalplus"}
    assert all(v["n"] == 2 for v in h["per_set"].values())
    assert h["ci95"][0] <= h["after"] - h["before"] <= h["ci95"][1]
    assert s["config"]["rollout"]["engine"] == "vllm"
    for name in ("eval_before.jsonl", "eval_after.jsonl"):
        rows = [json.loads(x) for x in (out / name).read_text().splitlines()]
        assert sorted(r["id"] for r in rows) == ["humanevalplus_0", "humanevalplus_1", "mbpp_11", "mbpp_12"]
    metrics = [json.loads(x) for x in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    trained = [m for m in metrics if "engine_policy_logprob_diff" in m]
    assert len(trained) == 2
    # one on-policy update per step (4 samples, train_batch_size 4): no separate log-prob pass
    assert all(m["timing/logprob"] < 0.01 for m in trained), trained
    # vLLM (CPU, fp32) and the DeepSpeed policy agree after every weight sync: the sync took.
    assert all(m["engine_policy_logprob_diff"] < 1e-3 for m in trained), trained
    assert (out / "curve.png").stat().st_size > 1000
    # Running the same command again resumes from the final checkpoint: nothing is trained again and
    # the evaluations are read back, not redone.
    before = (out / "eval_after.jsonl").read_text()
    assert demo_real.main(args) == 0
    assert json.loads((out / "summary.json").read_text())["heldout"] == h
    assert (out / "eval_after.jsonl").read_text() == before
