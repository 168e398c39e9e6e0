"""The CPU demo, shortened: the held-out greedy pass rate must rise clearly."""
import json

import pytest

from trainer import demo

pytestmark = pytest.mark.slow


def test_cpu_demo_learns(ray_local, tmp_path):
    out = tmp_path / "demo"
    rc = demo.main(["--output_dir", str(out), "--max_steps", "30", "--target", "0.85", "--",
                    "--use_tensorboard", "false", "--progress_bar", "false"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["before"] < 0.5, summary
    assert summary["after"] >= 0.8, summary
    assert (out / "reward.png").stat().st_size > 1000
    rows = [json.loads(x) for x in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and "eval/pass_rate" in rows[0]
