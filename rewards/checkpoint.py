"""Training checkpoints that are complete or absent, never half-written (a crash mid-save or
an empty checkpoint directory must never lose or block a run).

Layout under the checkpoint root::

    step_00000040/            a complete checkpoint
        ds/                   DeepSpeed's save_checkpoint(tag="ds"): model, optimizer, LR scheduler
        latest                (DeepSpeed's pointer to "ds")
        rng_rank0.pt ...      python / numpy / torch (/ cuda) RNG states, one file per rank
        trainer_state.json    step, epoch, data position, world size
        complete.json         written last: only directories holding it count as checkpoints
    .tmp-step_00000060/       being written; renamed to step_00000060 once complete

Old checkpoints are deleted only after the new one is complete. Every rank calls ``save`` and
``load`` (DeepSpeed writes one shard per rank); the root must be on a filesystem all ranks share.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil

import numpy as np
import torch
import torch.distributed as dist

from common.io import atomic_write_text, fsync_dir

log = logging.getLogger(__name__)

COMPLETE = "complete.json"
STATE = "trainer_state.json"
TAG = "ds"


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def complete_checkpoints(root: str) -> list[tuple[int, str]]:
    """(step, path) of every complete checkpoint under root, oldest first."""
    found = []
    if not os.path.isdir(root):
        return found
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if not name.startswith("step_") or not name[5:].isdigit():
            continue
        if os.path.isfile(os.path.join(path, COMPLETE)):
            found.append((int(name[5:]), path))
        else:
            log.warning("ignoring incomplete checkpoint %s (no %s)", path, COMPLETE)
    return sorted(found)


def latest_checkpoint(root: str) -> str | None:
    found = complete_checkpoints(root)
    return found[-1][1] if found else None


def is_complete(path: str) -> bool:
    return os.path.isfile(os.path.join(path, COMPLETE))


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(engine, root: str, step: int, trainer_state: dict, max_keep: int) -> str:
    """Write checkpoint ``step`` atomically, then keep only the newest ``max_keep`` complete ones."""
    rank = _rank()
    final = os.path.join(root, f"step_{step:08d}")
    tmp = os.path.join(root, f".tmp-step_{step:08d}")
    if rank == 0:
        os.makedirs(root, exist_ok=True)
        for name in os.listdir(root):  # leftovers of interrupted saves are incomplete by definition
            if name.startswith(".tmp-step_"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    _barrier()
    engine.save_checkpoint(tmp, tag=TAG)
    torch.save(rng_state(), os.path.join(tmp, f"rng_rank{rank}.pt"))
    _barrier()
    if rank == 0:
        atomic_write_text(os.path.join(tmp, STATE), json.dumps(trainer_state, indent=2))
        atomic_write_text(os.path.join(tmp, COMPLETE), json.dumps({"step": step}))
        if os.path.exists(final):  # a re-run reached this step again: replace the older copy
            old = final + ".old"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(root)
        for _, path in complete_checkpoints(root)[:-max_keep] if max_keep > 0 else []:
            shutil.rmtree(path, ignore_errors=True)
    _barrier()
    return final


def load(engine, path: str, world_size: int) -> dict:
    """Restore engine (model, optimizer, scheduler) and RNG states; return the trainer state."""
    if not is_complete(path):
        raise ValueError(f"--resume {path}: not a complete checkpoint (no {COMPLETE})")
    with open(os.path.join(path, STATE), encoding="utf-8") as f:
        state = json.load(f)
    if state.get("world_size", world_size) != world_size:
        raise ValueError(f"--resume {path}: saved with {state['world_size']} processes, now {world_size}; "
                         "ZeRO optimizer shards only load into the same world size")
    load_path, _ = engine.load_checkpoint(path, tag=TAG, load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if load_path is None:
        raise ValueError(f"--resume {path}: DeepSpeed could not load {os.path.join(path, TAG)}")
    rng_file = os.path.join(path, f"rng_rank{_rank()}.pt")
    set_rng_state(torch.load(rng_file, weights_only=False))
    return state
