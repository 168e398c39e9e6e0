"""The GPU benchmark scripts (issue 6) run end to end at toy size on CPU, so a GPU session only has to
run them: every table row is produced, with finite positive throughputs."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_all_at_toy_size_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["bash", "benchmarks/gpu/run_all.sh", "toy"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    policy = {r["phase"]: r for r in json.loads((tmp_path / "policy_toy.json").read_text())}
    assert set(policy) == {"policy log-probs", "reference log-probs", "train step"}
    packed = {r["phase"]: r for r in json.loads((tmp_path / "policy_packed_toy.json").read_text())}
    assert set(packed) == set(policy)
    generation = json.loads((tmp_path / "generation_toy.json").read_text())
    assert [r["prompts"] for r in generation] == [2, 4]
    rm = json.loads((tmp_path / "rm_toy.json").read_text())
    assert [r["batch size"] for r in rm] == [2, 4]
    step = {r["phase"]: r for r in json.loads((tmp_path / "rl_step_toy.json").read_text())}
    assert set(step) == {"generate", "reward (sandbox)", "policy log-probs", "reference log-probs", "advantages",
                         "train", "weight sync", "step"}
    assert sum(r["seconds"] for k, r in step.items() if k != "step") == pytest.approx(step["step"]["seconds"])
    values = [r["real tokens/s"] for r in policy.values()] + [r["ours tokens/s"] for r in generation] + \
        [r["plain generate tokens/s"] for r in generation] + [r["sequences/s"] for r in rm]
    assert all(math.isfinite(v) and v > 0 for v in values), values
    assert 0 < policy["train step"]["padding %"] < 100  # mixed lengths: some padding, mostly tokens
    assert "real tokens/s" in proc.stdout and "ours / plain" in proc.stdout
