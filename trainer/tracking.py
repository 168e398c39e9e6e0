"""Metrics: JSON lines always (SAVE_PATH/metrics.jsonl), TensorBoard by default, Weights & Biases
when configured, and a summary table at the end of a run.

``MetricsLog`` (JSON lines and TensorBoard) serves both trainers: the RL trainer through
``Tracker``, the reward-model trainer directly."""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from common.io import atomic_write_text

from .config import RLConfig


class MetricsLog:
    """Append-only JSON lines, one flushed line per record, plus TensorBoard scalars when
    ``tensorboard_dir`` is given. Resumable: opening it with ``resumed_step`` cuts the lines of later
    steps (they will be produced again), so the file holds each step once, and a torn last line (a
    crash mid-write) is dropped."""

    def __init__(self, path: str, resumed_step: int = 0, tensorboard_dir: str | None = None):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._drop_steps_after(resumed_step)
        self._jsonl = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(tensorboard_dir)

    def _drop_steps_after(self, step: int) -> None:
        if not os.path.exists(self.path):
            return
        keep = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line
                if rec.get("step", 0) <= step:
                    keep.append(line if line.endswith("\n") else line + "\n")
        atomic_write_text(self.path, "".join(keep))

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write one record ``{"step": step, **metrics}`` (tensors as numbers, non-finite floats as
        null) and return it; numbers also go to TensorBoard."""
        rec = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in _scalars(rec).items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        return rec

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


class Tracker:
    def __init__(self, cfg: RLConfig, resumed_step: int = 0):
        self.cfg = cfg
        save_path = cfg.checkpoint.save_path
        self.metrics = MetricsLog(os.path.join(save_path, "metrics.jsonl"), resumed_step,
                                  os.path.join(save_path, "tensorboard") if cfg.logging.use_tensorboard else None)
        self.history: list[dict] = []
        self._wandb = None
        if cfg.logging.use_wandb:
            import wandb

            self._wandb = wandb.init(project=cfg.logging.wandb_project, name=cfg.logging.wandb_run_name or None,
                                     config=cfg.to_dict(), resume="allow", dir=save_path)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        rec = self.metrics.log(step, metrics)
        self.history.append(rec)
        if self._wandb is not None:
            self._wandb.log(_scalars(rec), step=step)

    def summary(self, keys: tuple[str, ...] = ("reward_mean", "pass_rate", "kl", "response_length",
                                                "timing/step")) -> str:
        if not self.history:
            return "no steps run"
        rows = [f"{'metric':<22}{'first step':>14}{'last step':>14}"]
        for k in keys:  # per metric: the eval-only record at step 0 has no training metrics
            seen = [rec[k] for rec in self.history if rec.get(k) is not None]
            if seen:
                rows.append(f"{k:<22}{_fmt(seen[0]):>14}{_fmt(seen[-1]):>14}")
        return "\n".join(rows)

    def close(self) -> None:
        self.metrics.close()
        if self._wandb is not None:
            self._wandb.finish()


def _scalars(rec: dict[str, Any]) -> dict[str, int | float]:
    return {k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "step"}


def _clean(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
