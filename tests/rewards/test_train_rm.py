"""apps.train_rm: CLI validation, real DeepSpeed ZeRO runs on CPU (gloo), exact resume."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from apps.train_rm import build_parser, main, open_metrics, parse_args
from common.io import RecordError, write_records
from common.lr_schedule import warmup_cosine_factor
from rewards.rm_data import load_pairs
from trainer import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPENRLHF_NAMES = ["--pretrain", "--dataset", "--save_path", "--zero_stage", "--learning_rate", "--train_batch_size",
                  "--micro_train_batch_size", "--max_len", "--max_epochs", "--lr_warmup_ratio",
                  "--gradient_checkpointing", "--save_steps", "--max_ckpt_num", "--max_ckpts", "--seed", "--bf16",
                  "--logging_steps", "--eval_steps", "--use_tensorboard", "--eval_dataset", "--eval_split", "--resume"]


def _argv(tiny_lm, pairs_file, save_path, *extra):
    return ["--pretrain", tiny_lm, "--dataset", pairs_file, "--save_path", str(save_path), "--eval_split", "0.2",
            "--train_batch_size", "16", "--micro_train_batch_size", "8", "--learning_rate", "5e-4",
            "--max_len", "128", "--seed", "7", *extra]


def test_help_lists_options_with_defaults():
    out = subprocess.run([sys.executable, "-m", "apps.train_rm", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in OPENRLHF_NAMES:
        assert name in out.stdout, name
    text = " ".join(out.stdout.split())  # undo argparse's line wrapping
    for action in build_parser()._actions:
        if action.dest not in ("help",):
            help_text = build_parser()._get_formatter()._get_help_string(action)
            assert "default" in help_text or "(required)" in help_text, action.dest
    assert "--learning_rate LEARNING_RATE peak AdamW learning rate (default: 1e-05)" in text
    assert "(default: 128)" in text and "--pretrain PRETRAIN backbone" in text


@pytest.mark.parametrize("extra, option", [
    (["--zero_stage", "5"], "--zero_stage"),
    (["--learning_rate", "0"], "--learning_rate"),
    (["--learning_rate", "fast"], "--learning_rate"),
    (["--train_batch_size", "12", "--micro_train_batch_size", "8"], "--train_batch_size"),
    (["--eval_split", "1.5"], "--eval_split"),
    (["--lr_warmup_ratio", "-0.1"], "--lr_warmup_ratio"),
    (["--max_ckpt_num", "0"], "--max_ckpt_num"),
    (["--resume", "/nonexistent/step_1"], "--resume"),
])
def test_bad_option_values_name_the_option(tiny_lm, pairs_file, tmp_path, capsys, extra, option):
    with pytest.raises(SystemExit) as e:
        parse_args(_argv(tiny_lm, pairs_file, tmp_path) + extra)
    assert e.value.code == 2
    assert option in capsys.readouterr().err


def test_missing_dataset_names_the_option(tiny_lm, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--pretrain", tiny_lm, "--dataset", str(tmp_path / "nope.jsonl")])
    assert "--dataset" in capsys.readouterr().err


def test_bad_records_name_file_line_field(tmp_path):
    path = str(tmp_path / "p.jsonl")
    write_records(path, [{"question": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "a"}])
    with pytest.raises(RecordError) as e:
        load_pairs(path)
    assert (e.value.path, e.value.line, e.value.field) == (path, 2, "rejected")
    write_records(path, [{"prompt": "q", "chosen": ["a"], "rejected": "b"}])
    with pytest.raises(RecordError, match=r"p.jsonl:1: field 'chosen'"):
        load_pairs(path)
    write_records(path, [{"chosen": "a", "rejected": "b"}])
    with pytest.raises(RecordError, match="field 'prompt'"):
        load_pairs(path)
    # Both accepted spellings of the prompt field, JSONL and Parquet.
    write_records(str(tmp_path / "p.parquet"), [{"question": "q", "chosen": "a", "rejected": "b"}])
    assert load_pairs(str(tmp_path / "p.parquet"))[0].prompt == "q"


def _held_out(model_dir, tiny_lm, pairs_file, seed=7, fraction=0.2) -> tuple[float, float]:
    """(accuracy, Bradley-Terry loss) of a saved model on the held-out prompts, computed here."""
    from transformers import AutoTokenizer

    from rewards.reward_model import RewardModel, bradley_terry_loss
    from rewards.rm_data import collate, split_by_prompt

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    torch.manual_seed(seed)  # the trainer seeds the fresh head the same way
    rm = RewardModel.from_pretrained(model_dir).eval()
    _, held = split_by_prompt(load_pairs(pairs_file), fraction, seed)
    b = collate(tok, held, 128, tok.pad_token_id)
    with torch.no_grad():
        r = rm(b["input_ids"], b["attention_mask"])
    n = len(held)
    return ((r[:n] - r[n:]) > 0).float().mean().item(), bradley_terry_loss(r[:n], r[n:]).item()


@pytest.mark.slow
@pytest.mark.parametrize("stage, extra", [(2, []), (3, ["--gradient_checkpointing"])])
def test_zero_training_on_cpu_learns(tiny_lm, pairs_file, tmp_path, stage, extra):
    """Held-out accuracy > 0.8 on unseen prompts, and held-out loss well below log 2.

    The loss is the control: the fresh head is tiny, so the untrained model's margins are ~0 and its
    loss is log 2 whatever its accuracy (a random model can rank one bug type consistently by
    chance, so its accuracy alone proves nothing). Only learning the right direction lowers it.
    """
    acc0, loss0 = _held_out(tiny_lm, tiny_lm, pairs_file)
    assert loss0 == pytest.approx(math.log(2), abs=0.01)
    t0 = time.time()
    result = main(_argv(tiny_lm, pairs_file, tmp_path, "--zero_stage", str(stage), "--eval_steps", "7", *extra))
    elapsed = time.time() - t0
    print(f"zero-{stage}: held-out acc {acc0:.3f} -> {result['eval/acc']:.3f}, loss {loss0:.3f} -> "
          f"{result['eval/loss']:.3f}, margin {result['eval/margin']:.3f}, {result['step']} steps, {elapsed:.1f} s")
    assert result["step"] == 14 and result["eval/pairs"] == 58
    assert result["eval/acc"] > 0.8 and result["eval/loss"] < math.log(2) - 0.15 and result["eval/margin"] > 0.3
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows if "train/loss" in r] == list(range(1, 15))
    assert [r["step"] for r in rows if "eval/acc" in r and "done" not in r] == [7, 14]
    # the shared schedule (trainer/lr_schedule.py): 2 warmup steps of 14, cosine to 0.1 x lr
    assert [r["train/lr"] for r in rows if "train/lr" in r] == pytest.approx(
        [5e-4 * warmup_cosine_factor(s, max_steps=14, lr_warmup_ratio=0.1, min_lr_ratio=0.1) for s in range(1, 15)])
    assert rows[-1]["done"] == 1
    assert os.listdir(tmp_path / "tensorboard")
    # The export loads as a RewardModel and reproduces what the trainer reported.
    acc, loss = _held_out(result["final"], tiny_lm, pairs_file)
    assert acc == pytest.approx(result["eval/acc"]) and loss == pytest.approx(result["eval/loss"], rel=1e-4)


def _weights(path):
    return load_file(os.path.join(path, "model.safetensors"))


@pytest.mark.slow
def test_resume_is_exact_and_skips_half_written_checkpoints(tiny_lm, pairs_file, tmp_path):
    # 2 epochs of 7 steps, gradient accumulation 2; the run stops mid-epoch and resumes across the
    # epoch boundary.
    common = ["--max_epochs", "2", "--train_batch_size", "32", "--micro_train_batch_size", "16",
              "--eval_steps", "3"]
    straight = main(_argv(tiny_lm, pairs_file, tmp_path / "a", *common))
    assert straight["step"] == 14
    first = main(_argv(tiny_lm, pairs_file, tmp_path / "b", *common, "--save_steps", "2", "--max_ckpts", "2",
                       "--stop_at_step", "5"))
    assert first["stopped"] and not os.path.exists(tmp_path / "b" / "final")
    ckpts = tmp_path / "b" / "checkpoints"
    assert sorted(os.listdir(ckpts)) == ["step_000004", "step_000005"]  # rotation kept the newest 2
    state = checkpoint.load_state(ckpts / "step_000005")
    assert (state["step"], state["epoch"], state["micro_batch"]) == (5, 0, 10)
    # A later checkpoint that never completed (crash mid-save): resume must not pick it.
    (ckpts / "step_000010" / "ds").mkdir(parents=True)
    (ckpts / "step_000010" / checkpoint.STATE).write_text("{garbage")
    assert checkpoint.find_resume(str(ckpts), "auto").name == "step_000005"
    # The stopped run died mid-write of a metrics line: the resumed run drops it (no crash).
    with open(tmp_path / "b" / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 6, "train/lo')
    second = main(_argv(tiny_lm, pairs_file, tmp_path / "b", *common, "--resume", "auto"))
    assert second["step"] == 14
    a, b = _weights(straight["final"]), _weights(second["final"])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    assert second["eval/acc"] == straight["eval/acc"] and second["eval/margin"] == straight["eval/margin"]
    # metrics.jsonl has every step once: rows past the checkpoint were not duplicated.
    steps = [json.loads(line)["step"] for line in open(tmp_path / "b" / "metrics.jsonl")]
    train_steps = [s for s, line in zip(steps, open(tmp_path / "b" / "metrics.jsonl")) if "train/loss" in line]
    assert train_steps == list(range(1, 15))


@pytest.mark.slow
def test_resume_auto_without_checkpoints_starts_fresh(tiny_lm, pairs_file, tmp_path):
    result = main(_argv(tiny_lm, pairs_file, tmp_path, "--resume", "auto", "--stop_at_step", "1",
                        "--eval_dataset", pairs_file, "--eval_steps", "1"))
    assert result["step"] == 1 and result["stopped"] and result["eval/pairs"] == 288
    assert checkpoint.find_resume(str(tmp_path / "checkpoints"), "auto").name == "step_000001"


def test_metrics_resume_drops_later_steps_and_a_torn_last_line(tiny_lm, pairs_file, tmp_path):
    """A crash mid-write leaves a torn last line in metrics.jsonl; resuming must not fail on it (the
    RL trainer's logger, the same MetricsLog, drops it too)."""
    args = parse_args(_argv(tiny_lm, pairs_file, tmp_path, "--use_tensorboard", "none"))
    rows = [json.dumps({"step": s, "train/loss": 0.5}) + "\n" for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(rows) + '{"step": 4, "train/lo')
    metrics = open_metrics(args, rank=0, resumed_step=2)
    metrics.log(3, {"train/loss": 0.25, "train/grad_norm": float("nan")})
    metrics.close()
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [
        {"step": 1, "train/loss": 0.5}, {"step": 2, "train/loss": 0.5},
        {"step": 3, "train/loss": 0.25, "train/grad_norm": None}]
    assert open_metrics(args, rank=1, resumed_step=2) is None  # only rank 0 writes


def test_launch_script_passes_arguments_through(tmp_path):
    script = os.path.join(ROOT, "launch", "train_rm.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    out = subprocess.run(["bash", script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHON": sys.executable, "NUM_GPUS": "1"})
    assert out.returncode == 0, out.stderr
    assert "--micro_train_batch_size" in out.stdout
