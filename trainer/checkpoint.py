"""Crash-safe training checkpoints, shared by the RL trainer and the reward-model trainer: written
under a temporary name, made current by one rename, rotated only after the new one is complete.

A checkpoint directory holds step checkpoints ``step_000012/`` (6 or more digits). Each holds what
its trainer saved (DeepSpeed shards, exports), then, written last by ``commit``:
    trainer_state.pt   the trainer's state: step, data position, RNG states of every rank, ...
    COMPLETE           a step directory without it is ignored (a save that crashed half-way)
Staging directories ``.tmp-step_*`` are leftovers of interrupted saves; the next commit deletes them.

The RL trainer's checkpoint directory is SAVE_PATH/checkpoints (``ckpt_root``); the reward-model
trainer's is its --ckpt_path.

The RL trainer's step directories hold:
    policy/            the DeepSpeed checkpoint (weights, optimizer, scheduler) of every rank
    hf/                a save_pretrained export of the policy (when enabled)
    trainer_state.pt   step, data position, RNG states (controller and every rank), the reward
                       normalisation statistics, counters, config, rollouts generated ahead

``CheckpointState`` is mixed into the controller's ``Trainer`` (trainer/controller.py): what a save
writes and a resume restores, through the Trainer's ``policy``, ``ref``, ``sampler``, ``pipeline``,
``engines``, ``rewards``, ``step`` and ``policy_version``.
"""
from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
STATE = "trainer_state.pt"
_STEP = re.compile(r"^step_(\d{6,})$")
_STAGING = ".tmp-step_"
# options that may change between a run and its resumption
RESUMABLE_CHANGES = {"resume", "max_steps", "save_steps", "max_ckpt_num", "logging_steps", "eval_steps",
                     "use_tensorboard", "use_wandb", "stop_at_eval_pass_rate", "wandb_project", "wandb_run_name",
                     "progress_bar",
                     "reward_timeout_s", "reward_retries", "save_hf_model", "num_episodes",
                     "packing_samples", "logprob_chunk_size", "num_threads"}  # layout of the same computation


def ckpt_root(save_path: str) -> Path:
    """The RL trainer's checkpoint directory."""
    return Path(save_path) / "checkpoints"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / COMPLETE).is_file()


def complete_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first. Half-written ones (no COMPLETE) are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if not (m := _STEP.match(p.name)):
            continue
        if is_complete(p):
            found.append((int(m.group(1)), p))
        else:
            log.warning("ignoring incomplete checkpoint %s (no %s)", p, COMPLETE)
    return [p for _, p in sorted(found)]


def find_resume(root: str | os.PathLike, resume: str) -> Path | None:
    """'auto': the newest complete checkpoint under ``root`` or None; 'none': None; else that path
    (it must be complete)."""
    if resume == "none":
        return None
    if resume == "auto":
        done = complete_checkpoints(root)
        return done[-1] if done else None
    p = Path(resume)
    if not is_complete(p):
        raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint (no {COMPLETE} file)")
    return p


def staging_dir(root: str | os.PathLike, step: int) -> Path:
    """A fresh directory under ``root`` to write checkpoint ``step`` into, then hand to ``commit``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{_STAGING}{step:06d}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    return tmp


def commit(tmp: Path, root: str | os.PathLike, step: int, state: dict[str, Any], max_keep: int) -> Path:
    """Write the trainer state and the COMPLETE marker into ``tmp``, rename it into place as
    ``step_NNNNNN``, then keep only the newest ``max_keep`` complete checkpoints."""
    root = Path(root)
    torch.save(state, tmp / STATE)
    fsync_tree(tmp)
    (tmp / COMPLETE).write_text(f"step {step}\n")
    final = root / step_name(step)
    if final.exists():  # an older attempt at the same step: moved aside, replaced, only then deleted
        aside = root / f"{_STAGING}{step:06d}-replaced-{os.getpid()}-{time.monotonic_ns()}"
        os.replace(final, aside)
        os.replace(tmp, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(root)
    for old in complete_checkpoints(root)[:-max_keep] if max_keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(f"{_STAGING}*"):  # leftovers of crashed saves
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    return torch.load(Path(path) / STATE, weights_only=False)


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
        tmp = staging_dir(ckpt_root(cfg.save_path), self.step)
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
        final = commit(tmp, ckpt_root(cfg.save_path), self.step, state, cfg.max_ckpt_num)
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
