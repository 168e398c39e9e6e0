"""Crash-safe checkpoints: written under a temporary name, made current by one rename, rotated only
after the new one is complete.

Layout: SAVE_PATH/checkpoints/step_000012/
    policy/            the DeepSpeed checkpoint (weights, optimizer, scheduler) of every rank
    hf/                a save_pretrained export of the policy (when enabled)
    trainer_state.pt   step, data position, RNG states (controller and every rank), the reward
                       normalisation statistics, counters, config, rollouts generated ahead
    COMPLETE           written last: a directory without it is ignored

``CheckpointState`` is mixed into the controller's ``Trainer`` (trainer/controller.py): what a save
writes and a resume restores, through the Trainer's ``policy``, ``ref``, ``sampler``, ``pipeline``,
``engines``, ``rewards``, ``step`` and ``policy_version``.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.io import fsync_dir, fsync_tree

from .tracking import say

_STEP = re.compile(r"^step_(\d{6,})$")
# options that may change between a run and its resumption
RESUMABLE_CHANGES = {"resume", "max_steps", "save_steps", "max_ckpt_num", "logging_steps", "eval_steps",
                     "use_tensorboard", "use_wandb", "stop_at_eval_pass_rate", "wandb_project", "wandb_run_name", "progress_bar",
                     "reward_timeout_s", "reward_retries", "save_hf_model", "num_episodes",
                     "packing_samples", "logprob_chunk_size", "num_threads"}  # layout of the same computation


def ckpt_root(save_path: str) -> Path:
    return Path(save_path) / "checkpoints"


def complete_checkpoints(save_path: str) -> list[Path]:
    """Complete checkpoints, oldest first. Half-written ones (no COMPLETE) are skipped."""
    root = ckpt_root(save_path)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP.match(p.name)) and (p / "COMPLETE").is_file()]
    return [p for _, p in sorted(found)]


def find_resume(save_path: str, resume: str) -> Path | None:
    """'auto': the newest complete checkpoint or None; 'none': None; else that path (must be complete)."""
    if resume == "none":
        return None
    if resume == "auto":
        done = complete_checkpoints(save_path)
        return done[-1] if done else None
    p = Path(resume)
    if not (p / "COMPLETE").is_file():
        raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint (no COMPLETE file)")
    return p


def staging_dir(save_path: str, step: int) -> Path:
    root = ckpt_root(save_path)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-step_{step:06d}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    return tmp


def commit(tmp: Path, save_path: str, step: int, state: dict[str, Any], max_keep: int) -> Path:
    """Write the trainer state and the COMPLETE marker, rename into place, then rotate."""
    torch.save(state, tmp / "trainer_state.pt")
    fsync_tree(tmp)
    (tmp / "COMPLETE").write_text(f"step {step}\n")
    final = ckpt_root(save_path) / f"step_{step:06d}"
    if final.exists():  # an older attempt at the same step: replace it only now
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    for old in complete_checkpoints(save_path)[:-max_keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root(save_path).glob(".tmp-step_*"):  # leftovers of crashed saves
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(path / "trainer_state.pt", weights_only=False)


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch CPU and CUDA generator states.

    "cuda" holds ``torch.cuda.get_rng_state_all()`` only where CUDA is initialised: a process that
    never touched CUDA (the driver) has not drawn from its CUDA generators, and reading them would
    create a CUDA context on every visible GPU."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": cuda}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state()``. CUDA states are restored where CUDA is available, one per visible
    device; a checkpoint without them (made on CPU, or before they were saved) leaves the CUDA
    generators as seeded, and CUDA states resumed on a machine without CUDA are ignored."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for device, s in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, device)  # queued until CUDA initialises: no context now


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Options whose values differ, excluding those that may change on resumption. An option the
    checkpoint does not know came with a newer version of the trainer: it does not block resuming."""
    out = []
    for k in sorted(set(saved) | set(current)):
        if k not in saved:
            continue
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{k}.")
        elif k not in RESUMABLE_CHANGES and a != b:
            out.append(f"{prefix}{k}: checkpoint has {a!r}, now {b!r}")
    return out


class CheckpointState:
    """The Trainer's save and resume (see the module docstring for what it uses)."""

    def save(self) -> None:
        cfg = self.cfg.checkpoint
        in_flight = self._drain()  # async: rollouts generated ahead are saved, not regenerated
        tmp = staging_dir(cfg.save_path, self.step)
        self.policy.call("save_checkpoint", None, str(tmp / "policy"), "policy")
        if cfg.save_hf_model:
            self.policy.call("save_hf", None, str(tmp / "hf"), self.cfg.model.pretrain)
        state = {"step": self.step, "sampler": self.sampler.state_dict(), "config": self.cfg.to_dict(),
                 "rng": rng_state(),
                 "rank_rng": self.policy.call("rng_state"),
                 "ref_rng": self.ref.call("rng_state") if self.ref is not None else None,
                 "reward_norm": self.reward_norm.state_dict(),
                 "counters": {"engine_restarts": self.engines.restarts, "reward_restarts": self.rewards.restarts},
                 "rollouts": in_flight}
        final = commit(tmp, cfg.save_path, self.step, state, cfg.max_ckpt_num)
        say(f"[ckpt] step {self.step} saved to {final}")

    def _restore(self, path, state: dict) -> None:
        self.policy.call("load_checkpoint", None, str(path / "policy"), "policy")
        self.policy.call("set_rng_state", [(s,) for s in state["rank_rng"]])
        if self.ref is not None and state.get("ref_rng"):
            self.ref.call("set_rng_state", [(s,) for s in state["ref_rng"]])
        self.sampler.load_state_dict(state["sampler"])
        if "reward_norm" in state:  # older checkpoints did not keep the statistics: they start afresh
            self.reward_norm.load_state_dict(state["reward_norm"])
        set_rng_state(state["rng"])
        self.step = self.policy_version = int(state["step"])
        self.pipeline.restore(state.get("rollouts") or [])
        say(f"[ckpt] resumed from {path} at step {self.step}")
