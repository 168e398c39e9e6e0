"""Issue 5's CPU proof, end to end: a BT reward model trained on the policy's own sandbox-scored samples
ranks held-out answer pairs far above chance and picks better-than-average answers in best-of-8."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_rm_trained_on_policy_samples_beats_the_average_sample(tmp_path):
    spec = importlib.util.spec_from_file_location("rm_bon_cpu", ROOT / "benchmarks" / "rm_bon_cpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summary = bench.main(["--output_dir", str(tmp_path), "--seed", "0"])

    assert summary["pairs"]["train"] >= 100 and summary["pairs"]["heldout"] >= 10
    # Chance is 0.5; seeds 0-2 measured 0.90-1.00 (docs/benchmarks.md).
    assert summary["heldout_pair_accuracy"] >= 0.75
    best8 = summary["best_of"]["8"]
    assert best8["rm"] >= best8["average"] + 0.15, best8  # measured +0.31 to +0.41 over the average sample
    assert best8["rm"] <= best8["oracle"] + 1e-9
    assert json.loads((tmp_path / "summary.json").read_text())["best_of"]["8"] == best8
