"""Metrics: JSON lines always (SAVE_PATH/metrics.jsonl), TensorBoard by default, Weights & Biases
when configured, and a summary table at the end of a run."""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from .config import RLConfig


class Tracker:
    def __init__(self, cfg: RLConfig, resumed_step: int = 0):
        self.cfg = cfg
        os.makedirs(cfg.checkpoint.save_path, exist_ok=True)
        self.path = os.path.join(cfg.checkpoint.save_path, "metrics.jsonl")
        self._drop_steps_after(resumed_step)
        self._jsonl = open(self.path, "a", encoding="utf-8")
        self.history: list[dict] = []
        self._tb = self._wandb = None
        if cfg.logging.use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(os.path.join(cfg.checkpoint.save_path, "tensorboard"))
        if cfg.logging.use_wandb:
            import wandb

            self._wandb = wandb.init(project=cfg.logging.wandb_project, name=cfg.logging.wandb_run_name or None,
                                     config=cfg.to_dict(), resume="allow", dir=cfg.checkpoint.save_path)

    def _drop_steps_after(self, step: int) -> None:
        """On resume, lines of steps the restored checkpoint does not include are cut (they will be
        produced again), so metrics.jsonl holds each step exactly once."""
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
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(keep)
        os.replace(tmp, self.path)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        rec = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self.history.append(rec)
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        scalars = {k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

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
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


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
