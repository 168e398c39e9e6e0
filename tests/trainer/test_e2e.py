"""End to end on CPU with real Ray actors, real DeepSpeed (gloo) and the real sandbox."""
import json

import pytest

from trainer.config import load_config
from trainer.controller import Trainer

pytestmark = pytest.mark.slow


def base_args(tiny_model, tiny_records, out, *extra):
    return ["--pretrain", tiny_model, "--prompt_data", tiny_records, "--save_path", str(out),
            "--engine", "hf", "--actor_num_gpus_per_node", "0", "--ref_num_gpus_per_node", "0",
            "--zero_stage", "2", "--bf16", "false", "--gradient_checkpointing", "false",
            "--rollout_batch_size", "4", "--n_samples_per_prompt", "2", "--generate_max_len", "8",
            "--train_batch_size", "8", "--micro_train_batch_size", "4", "--max_steps", "2",
            "--actor_learning_rate", "1e-4", "--sandbox_workers", "1", "--sandbox_timeout_s", "2",
            "--use_tensorboard", "false", "--progress_bar", "false", "--save_steps", "0",
            "--attn_implementation", "eager", *extra]


def run(args):
    trainer = Trainer(load_config(args))
    try:
        return trainer.fit()
    finally:
        trainer.close()


def test_two_steps_with_a_custom_reward_plugin(ray_local, tiny_model, tiny_records, tmp_path):
    log_dir = tmp_path / "plugin"
    log_dir.mkdir()
    spec = "tests.trainer.plugin_rewards:CallLog"
    # packed micro-batches here (the other trainer tests run padded): the engine's log-probs must
    # still agree with the policy's after the weight sync
    history = run(base_args(tiny_model, tiny_records, tmp_path / "out", "--packing_samples", "true",
                            "--reward", f"tests,{spec}", "--reward_weights", "1.0,0.5",
                            "--reward_kwargs", json.dumps({spec: {"log_dir": str(log_dir)}})))
    assert [h["step"] for h in history] == [1, 2]
    lines = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    for key in ("reward_mean", "pass_rate", "kl", "response_length", "entropy", "clip_frac",
                "timing/generate", "timing/train", "timing/sync", "generate_tokens_per_s"):
        assert key in lines[-1], key
    assert lines[-1]["engine_policy_logprob_diff"] < 1e-3  # weights were synced
    calls = sum(int(n) for f in log_dir.iterdir() for n in f.read_text().split())
    assert calls == 2 * 4 * 2  # every sample of both steps went through the plugin
    ckpts = list((tmp_path / "out" / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["step_000002"] and (ckpts[0] / "COMPLETE").exists()
    assert (ckpts[0] / "hf" / "config.json").exists()


def test_a_reward_that_raises_or_hangs_does_not_stop_training(ray_local, tiny_model, tiny_records, tmp_path):
    history = run(base_args(tiny_model, tiny_records, tmp_path / "out",
                            "--reward", "tests.trainer.plugin_rewards:Raises,tests.trainer.plugin_rewards:ReturnsNone"))
    assert [h["step"] for h in history] == [1, 2]
    assert history[-1]["reward_status/error"] == 8 and history[-1]["reward_mean"] == 0.0
    history = run(base_args(tiny_model, tiny_records, tmp_path / "out2",
                            "--reward", "tests.trainer.plugin_rewards:Hangs", "--reward_timeout_s", "3"))
    assert [h["step"] for h in history] == [1, 2]
    assert history[-1]["reward_status/timeout"] == 8
    assert history[-1]["reward_actor_restarts"] >= 2


def test_invalid_options_fail_before_any_actor_starts(tiny_model, tiny_records, tmp_path):
    from trainer.config import ConfigError

    with pytest.raises(ConfigError, match="--train_batch_size"):
        load_config(base_args(tiny_model, tiny_records, tmp_path, "--train_batch_size", "7"))
    with pytest.raises(ConfigError, match="--reward"):
        load_config(base_args(tiny_model, tiny_records, tmp_path, "--reward", "nonsense"))
