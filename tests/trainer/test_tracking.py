"""Metrics go to JSON lines, TensorBoard and (offline) Weights & Biases; resume drops replayed steps."""
import json

from trainer.config import RLConfig
from trainer.tracking import Tracker


def test_tracker_writes_every_sink_and_trims_on_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = RLConfig()
    cfg.checkpoint.save_path = str(tmp_path)
    cfg.logging.use_wandb = True
    t = Tracker(cfg)
    for step in (1, 2, 3):
        t.log(step, {"reward_mean": step / 10, "timing/step": 1.0})
    summary = t.summary()
    t.close()
    assert "reward_mean" in summary and "0.1" in summary and "0.3" in summary
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert any((tmp_path / "tensorboard").iterdir())
    assert any(p.name.startswith("offline-run") for p in (tmp_path / "wandb").iterdir())
    # resuming from step 2: step 3 will be produced again, so its line goes
    cfg.logging.use_wandb = False
    Tracker(cfg, resumed_step=2).close()
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_summary_takes_each_metric_from_the_records_that_have_it(tmp_path):
    cfg = RLConfig()
    cfg.checkpoint.save_path = str(tmp_path)
    t = Tracker(cfg)
    t.log(0, {"eval/pass_rate": 0.375})  # the before-RL evaluation: no training metrics yet
    t.log(1, {"reward_mean": 0.5, "kl": 0.0})
    t.log(2, {"reward_mean": 0.75, "kl": 0.07})
    rows = {line.split()[0]: line.split()[1:] for line in t.summary().splitlines()[1:]}
    t.close()
    assert rows["reward_mean"] == ["0.5", "0.75"]
    assert rows["kl"][1] == "0.07"
