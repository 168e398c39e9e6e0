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
