"""Checkpoint layout rules: atomic commit, rotation after completion, incomplete ones ignored."""
import random

import numpy as np
import pytest
import torch

from trainer import checkpoint as ckpt


def make(save, step, keep=3, payload="x"):
    tmp = ckpt.staging_dir(ckpt.ckpt_root(str(save)), step)
    (tmp / "policy").mkdir()
    (tmp / "policy" / "weights.bin").write_text(payload)
    return ckpt.commit(tmp, ckpt.ckpt_root(str(save)), step, {"step": step, "config": {}}, keep)


def test_commit_rotation_and_resume_choice(tmp_path):
    root = ckpt.ckpt_root(str(tmp_path))
    assert ckpt.find_resume(root, "auto") is None  # nothing yet: start fresh
    (tmp_path / "checkpoints").mkdir()
    assert ckpt.find_resume(root, "auto") is None  # an empty directory too
    for step in (1, 2, 3, 4):
        make(tmp_path, step, keep=2)
    names = [p.name for p in ckpt.complete_checkpoints(root)]
    assert names == ["step_000003", "step_000004"]
    # a save that crashed half-way (no COMPLETE) is ignored, then cleaned up by the next commit
    tmp = ckpt.staging_dir(root, 5)
    (tmp / "policy").mkdir()
    bad = tmp_path / "checkpoints" / "step_000006"
    bad.mkdir()
    assert ckpt.find_resume(root, "auto").name == "step_000004"
    make(tmp_path, 7, keep=2)
    assert not tmp.exists()
    assert ckpt.find_resume(root, "auto").name == "step_000007"
    assert ckpt.load_state(ckpt.find_resume(root, "auto"))["step"] == 7
    assert ckpt.find_resume(root, "none") is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        ckpt.find_resume(root, str(bad))


def test_old_checkpoints_are_deleted_only_after_the_new_one_is_complete(tmp_path, monkeypatch):
    make(tmp_path, 1, keep=1)

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError):
        make(tmp_path, 2, keep=1)
    assert [p.name for p in ckpt.complete_checkpoints(ckpt.ckpt_root(str(tmp_path)))] == ["step_000001"]


def test_config_differences_name_the_options():
    saved = {"train": {"actor_learning_rate": 1e-6, "max_steps": 10}, "rollout": {"temperature": 1.0}}
    now = {"train": {"actor_learning_rate": 2e-6, "max_steps": 20}, "rollout": {"temperature": 1.0}}
    diffs = ckpt.config_differences(saved, now)
    assert diffs == ["train.actor_learning_rate: checkpoint has 1e-06, now 2e-06"]  # max_steps may change
    # an option newer than the checkpoint, and packing (the same numbers, laid out differently), do not block
    now["train"].update(actor_learning_rate=1e-6, packing_samples=True)
    assert ckpt.config_differences(saved, now) == []
    saved["train"]["packing_samples"] = False
    assert ckpt.config_differences(saved, now) == []
    # an option the checkpoint has and this trainer lost still counts
    assert ckpt.config_differences({"train": {"gamma": 1.0}}, {"train": {}}) == [
        "train.gamma: checkpoint has 1.0, now None"]


def _draws():
    import random

    import numpy as np
    import torch

    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    import torch

    torch.manual_seed(5)
    state = ckpt.rng_state()
    want = _draws()
    ckpt.commit(ckpt.staging_dir(str(tmp_path), 1), str(tmp_path), 1, {"step": 1, "rng": state}, 2)
    _draws()  # move every generator on
    ckpt.set_rng_state(ckpt.load_state(ckpt.find_resume(str(tmp_path), "auto"))["rng"])
    assert _draws() == want


def test_cuda_rng_states_are_saved_only_where_cuda_is_in_use(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ckpt.rng_state()["cuda"] is None  # a CPU-only process
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert ckpt.rng_state()["cuda"] is None  # the driver: CUDA never touched, no context created
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([1], dtype=torch.uint8)] * 2)
    assert [s.tolist() for s in ckpt.rng_state()["cuda"]] == [[1], [1]]


def test_cuda_rng_states_are_restored_per_device_and_their_absence_is_fine(monkeypatch):
    import torch

    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((int(s[0]), device)))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    state = ckpt.rng_state()
    old_format = {k: state[k] for k in ("python", "numpy", "torch")}  # saved before CUDA states were
    cuda_states = [torch.tensor([7], dtype=torch.uint8), torch.tensor([8], dtype=torch.uint8)]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ckpt.set_rng_state({**state, "cuda": None})  # made without CUDA, resumed with it
    ckpt.set_rng_state(old_format)
    assert restored == []
    ckpt.set_rng_state({**state, "cuda": cuda_states})
    assert restored == [(7, 0)]  # one state per visible device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ckpt.set_rng_state({**state, "cuda": cuda_states})  # made with CUDA, resumed without it
    assert restored == [(7, 0)]


def test_a_second_save_of_the_same_step_replaces_the_first(tmp_path):
    """A re-run that reaches a saved step again (the reward-model trainer after a resume): the newer
    copy is made current, the older one is removed, no staging directory is left."""
    make(tmp_path, 1, keep=2)
    make(tmp_path, 2, keep=2, payload="first")
    make(tmp_path, 2, keep=2, payload="second")
    root = ckpt.ckpt_root(str(tmp_path))
    assert [p.name for p in ckpt.complete_checkpoints(root)] == ["step_000001", "step_000002"]
    assert (root / "step_000002" / "policy" / "weights.bin").read_text() == "second"
    assert sorted(p.name for p in root.iterdir()) == ["step_000001", "step_000002"]


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
