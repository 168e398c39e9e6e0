"""A real two-node Ray cluster on this machine (ray start --head + ray start --address), the CPU demo
submitted with `ray job submit --working-dir .`, its metrics checked, the cluster stopped."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from common.net import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def test_ray_job_submit_on_a_two_node_cluster(tmp_path):
    gcs, dash = free_port(), free_port()
    # its own session directory, short: Ray's unix sockets live there (108-byte path limit)
    temp = Path(tempfile.mkdtemp(prefix="ray-"))
    # token authentication on every command (Ray 2.5x+ defaults the head to it; workers must match)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    def node_ports() -> list[str]:  # every port its own: another Ray may run on this machine
        return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]

    head = [RAY, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
            "--num-cpus=2", "--include-dashboard=true", f"--temp-dir={temp}", "--disable-usage-stats",
            *node_ports()]
    worker = [RAY, "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=2", *node_ports()]
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=180)
        subprocess.run(worker, env=env, check=True, capture_output=True, timeout=180)
        nodes = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{gcs}'); "
                                "print(len([n for n in ray.nodes() if n['Alive']]))"],
                               env=env, capture_output=True, text=True, timeout=120)
        assert nodes.stdout.strip().splitlines()[-1] == "2", nodes.stderr[-2000:]
        out = tmp_path / "demo"
        job = [RAY, "job", "submit", f"--address=http://127.0.0.1:{dash}", "--working-dir", str(ROOT), "--",
               "env", f"PYTHON={sys.executable}", f"OUTPUT_DIR={out}", "MAX_STEPS=3", "WARM_STEPS=40",
               "bash", "launch/demo_cpu.sh", "--eval_steps", "3", "--use_tensorboard", "false"]
        for _ in range(30):  # the head's job agent can take a while to come up
            p = subprocess.run(job, env=env, capture_output=True, text=True, timeout=1500)
            if "No available agent to submit job" not in p.stderr:
                break
            time.sleep(2)
        assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
        assert "succeeded" in (p.stdout + p.stderr)
        rows = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
        steps = [r["step"] for r in rows]
        assert steps == [0, 1, 2, 3]
        assert all("reward_mean" in r and 0 <= r["reward_mean"] <= 1 for r in rows[1:])
        assert "eval/pass_rate" in rows[0] and "eval/pass_rate" in rows[-1]
        assert (out / "reward.png").exists()
        assert (out / "rl" / "checkpoints" / "step_000003" / "COMPLETE").exists()
    finally:
        kill_cluster(str(temp), f":{gcs}")
        shutil.rmtree(temp, ignore_errors=True)


def kill_cluster(*marks: str) -> None:
    """Stop this test's cluster only. `ray stop` would kill every Ray process on the machine, the
    test session's own Ray (and with it the pytest process) included."""
    parents, cmd = {}, {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                parents[int(e)] = int(open(f"/proc/{e}/stat").read().rsplit(")", 1)[1].split()[1])
                cmd[int(e)] = open(f"/proc/{e}/cmdline", "rb").read().decode(errors="replace")
            except (OSError, IndexError, ValueError):
                pass
    doomed = {p for p, c in cmd.items() if any(m in c for m in marks)}
    grew = True
    while grew:
        kids = {p for p, pp in parents.items() if pp in doomed} - doomed
        grew = bool(kids)
        doomed |= kids
    doomed.discard(os.getpid())
    for p in doomed:
        try:
            os.kill(p, 9)
        except OSError:
            pass
