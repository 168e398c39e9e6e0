"""Exact resume: 4 steps straight versus 2 steps, a SIGKILL of the driver, then a resumed run to 4.
The metrics of steps 3 and 4 and the final weights must be identical: in sync mode, with async
training plus dynamic sampling (the rollout in flight at the checkpoint is saved with it, and the
data position after refills too), and with async training on a normalised reward-model reward (the
running statistics are saved with the checkpoint)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .plugin_rewards import HANG_ONCE_EXISTS
from .test_e2e import base_args

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DETERMINISTIC = ("reward_mean", "reward_std", "kl", "policy_loss", "entropy", "grad_norm", "clip_frac",
                 "approx_kl", "response_length", "pass_rate", "engine_policy_logprob_diff", "lr", "staleness",
                 "dynamic_filtering/rounds", "dynamic_filtering/dropped_frac",
                 "dynamic_filtering/zero_std_groups_trained")
MODES = {"sync": [],
         "async_dynamic_filtering": ["--async_train", "--dynamic_filtering", "--dynamic_filtering_max_rounds", "3"],
         # reward-model scores normalised with running statistics: they live in the driver, shared by
         # two reward actors, and the checkpoint carries them (the rollout generated ahead included)
         "async_rm_normalized": ["--async_train", "--reward", "tests,rm", "--reward_weights", "1,0.5",
                                 "--normalize_reward", "--reward_num_actors", "2"]}


def cmd(tiny_model, tiny_records, out, *extra):
    # a length-based reward next to the tests, so that a random tiny model gets a learning signal; it
    # is also the plugin that stops the killed run at a known point (weight 0 next to a reward model)
    spec = "tests.trainer.plugin_rewards:CallLog"
    (out / "plugin").mkdir(parents=True, exist_ok=True)
    kwargs = ["--reward_kwargs", json.dumps({spec: {"log_dir": str(out / "plugin")}})]
    if "--reward" in extra:
        i = extra.index("--reward")
        extra = [*extra[:i + 1], f"{extra[i + 1]},{spec}", *extra[i + 2:]]
        i = extra.index("--reward_weights")
        extra = [*extra[:i + 1], f"{extra[i + 1]},0", *extra[i + 2:]]
        rewards = kwargs
    else:
        rewards = ["--reward", f"tests,{spec}", *kwargs]
    args = base_args(tiny_model, tiny_records, out, "--max_steps", "4", "--save_steps", "2", "--seed", "3",
                     "--actor_learning_rate", "5e-4", "--temperature", "1.0", *rewards, *extra)
    return [sys.executable, "-m", "trainer", *args]


def metrics(out: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len({r["step"] for r in rows}) == len(rows), "a step was logged twice"
    return {r["step"]: r for r in rows}


@pytest.mark.parametrize("mode", list(MODES))
def test_resume_after_a_kill_is_exact(tiny_model, tiny_records, tmp_path, mode, request):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = MODES[mode]
    if "rm" in mode:
        extra = [*extra, "--reward_pretrain", request.getfixturevalue("tiny_rm")]
        # completion-style records whose program starts with a whole function: every answer has code
        # for the RM to score (a random model's own 8 tokens rarely parse), so every step moves the
        # statistics
        records = [json.loads(line) for line in Path(tiny_records).read_text().splitlines()]
        tiny_records = str(tmp_path / "records.jsonl")
        prefixed = [{**r, "program_prefix": f"def add{i}(a, b):\n    return a + b\n"} for i, r in enumerate(records)]
        Path(tiny_records).write_text("".join(json.dumps(r) + "\n" for r in prefixed))
    p = subprocess.run(cmd(tiny_model, tiny_records, straight, *extra), cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]

    # the killed run's plugin reward hangs once checkpoint 2 is complete: step 4 cannot train before
    # the kill, however fast the machine (the rollout of step 3 was scored before the checkpoint)
    marker = resumed / "checkpoints" / "step_000002" / "COMPLETE"
    hanging = Path(f"{marker}.hanging")
    proc = subprocess.Popen(cmd(tiny_model, tiny_records, resumed, *extra), cwd=ROOT,
                            env={**env, HANG_ONCE_EXISTS: str(marker)}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while not hanging.exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.2)
    assert marker.exists()
    os.killpg(proc.pid, signal.SIGKILL)  # the driver dies mid-run (its Ray actors die with it)
    proc.wait()
    assert not (resumed / "checkpoints" / "step_000004").exists()

    p = subprocess.run(cmd(tiny_model, tiny_records, resumed, *extra), cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resumed from" in p.stderr
    if extra:  # the rollout of step 3 was generated ahead, saved in the checkpoint, and not redone
        saved = torch.load(resumed / "checkpoints" / "step_000002" / "trainer_state.pt", weights_only=False)
        assert [ro.step for ro in saved["rollouts"]] == [3]
        if "rm" in mode:  # the statistics of steps 1-3's scored samples, the rollout ahead included
            ahead = sum(r.info["rm"]["status"] == "ok" for ro in saved["rollouts"] for r in ro.results)
            assert 0 < ahead < saved["reward_norm"]["stats"]["count"] <= 3 * 4 * 2

    a, b = metrics(straight), metrics(resumed)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    if extra:
        assert [a[s]["staleness"] for s in (1, 2, 3, 4)] == [0, 1, 1, 1]
        if "--dynamic_filtering" in extra:
            assert "dynamic_filtering/rounds" in a[3]
    for step in (3, 4):
        for key in DETERMINISTIC:
            assert a[step].get(key) == b[step].get(key), (step, key, a[step].get(key), b[step].get(key))
    wa = load_file(str(straight / "checkpoints" / "step_000004" / "hf" / "model.safetensors"))
    wb = load_file(str(resumed / "checkpoints" / "step_000004" / "hf" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # and training did move the weights
    w0 = load_file(str(Path(tiny_model) / "model.safetensors"))
    assert any(not torch.equal(wa[k], w0[k]) for k in wa if k in w0)


def test_resume_with_a_different_config_names_the_options(tiny_model, tiny_records, tmp_path):
    from trainer.checkpoint import ckpt_root, commit, staging_dir
    from trainer.config import ConfigError, load_config
    from trainer.controller import Trainer

    cfg = load_config(base_args(tiny_model, tiny_records, tmp_path))
    tmp = staging_dir(ckpt_root(str(tmp_path)), 1)
    saved = cfg.to_dict()
    saved["train"]["actor_learning_rate"] = 9.0
    commit(tmp, ckpt_root(str(tmp_path)), 1, {"step": 1, "config": saved}, 2)
    with pytest.raises(ConfigError, match="actor_learning_rate: checkpoint has 9.0"):
        Trainer(cfg)
