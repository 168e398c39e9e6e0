"""The sandbox's cost in this checkout against another one (a baseline commit), in one run.

Each round runs MBPP's canonical solutions (without mbpp_123, whose 1.6 s of computing would dominate)
through a fresh ``SandboxPool`` once per checkout, in a subprocess with that checkout's ``sandbox``
package; the order alternates between rounds so that a change in the node's load hits both alike.
Two figures per checkout: wall time and CPU time of the subprocess and everything under it (bwrap,
the harness, the programs), read from a cgroup made for the run (v1 cpuacct or v2; the pool's own
cgroups nest inside it). Without a writable cgroup, CPU is getrusage of the subprocess: the host
side only (the harnesses are re-parented when their bwrap is killed, so their CPU is not in it).
CPU time moves much less with the node's load than wall time, so it is the figure to compare on a
shared machine; wall time is what users see on an idle one.

    git worktree add --detach /tmp/base <commit>
    python benchmarks/sandbox_ab.py --baseline /tmp/base [--rounds 6] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
RUN = """
import json, sys, time
from sandbox import Job, SandboxPool
jobs = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["task_id"] != 123:
        jobs.append(Job(str(r["task_id"]), r["code"].replace("\\r\\n", "\\n"), tuple(r["test_list"]),
                        setup=r["test_setup_code"].replace("\\r\\n", "\\n")))
with SandboxPool(workers=int(sys.argv[2])) as pool:
    pool.run_many(jobs[:20])  # warm
    t = time.perf_counter()
    results = pool.run_many(jobs)
    wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "programs": len(jobs), "passed": sum(r.all_passed for r in results)}))
"""


def _cpu_cgroup() -> tuple[str, str] | None:
    """A fresh cgroup to run one measurement in: (its directory, the file with its CPU usage)."""
    for line in open("/proc/self/cgroup"):
        _, ctrls, path = line.strip().split(":", 2)
        if ctrls == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            base, usage = f"/sys/fs/cgroup{path}", "cpu.stat"
        elif "cpuacct" in ctrls.split(","):
            base, usage = f"/sys/fs/cgroup/{ctrls}{path}", "cpuacct.usage"
        else:
            continue
        d = f"{base.rstrip('/')}/sandbox-ab-{secrets.token_hex(4)}"
        try:
            os.mkdir(d)
        except OSError:
            return None
        return d, f"{d}/{usage}"
    return None


def _usage_s(path: str) -> float:
    text = open(path).read()
    return int(text.split()[1]) / 1e6 if text.startswith("usage_usec") else int(text) / 1e9


def one(tree: Path, data: Path, workers: int) -> dict:
    cgroup = _cpu_cgroup()
    procs = f"{cgroup[0]}/cgroup.procs" if cgroup else None

    def enter() -> None:  # in the child before exec: everything it starts is counted in the cgroup
        if procs:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run([sys.executable, "-c", RUN, str(data / "mbpp.jsonl"), str(workers)], check=True,
                             capture_output=True, text=True, cwd=tree, preexec_fn=enter,
                             env={**os.environ, "PYTHONPATH": str(tree)})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["cpu"] = (_usage_s(cgroup[1]) if cgroup else  # pool start-up and warm-up included
                    (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    finally:
        if cgroup:
            for _ in range(100):
                try:
                    os.rmdir(cgroup[0])
                    break
                except OSError:
                    time.sleep(0.05)
    return r


def _probe_cgroup() -> bool:
    c = _cpu_cgroup()
    if c:
        os.rmdir(c[0])
    return c is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, help="a checkout (worktree) of the commit to compare with")
    ap.add_argument("--data", default=str(HERE.parent / "shared" / "data"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    trees = {"baseline": Path(a.baseline).resolve(), "this": HERE}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    print(f"load before: {os.getloadavg()}; CPU measured {'in a cgroup' if _probe_cgroup() else 'by getrusage'}")
    for i in range(a.rounds):
        for name in (("baseline", "this") if i % 2 == 0 else ("this", "baseline")):
            r = one(trees[name], Path(a.data), a.workers)
            runs[name].append(r)
            print(f"round {i} {name:8s} wall {r['wall']:6.2f} s  cpu {r['cpu']:6.2f} s  "
                  f"{r['passed']}/{r['programs']} passed", flush=True)
    med = {k: (statistics.median(r["wall"] for r in v), statistics.median(r["cpu"] for r in v))
           for k, v in runs.items()}
    for k, (w, c) in med.items():
        print(f"median {k:8s} wall {w:6.2f} s  cpu {c:6.2f} s")
    print(f"this / baseline: wall {med['this'][0] / med['baseline'][0]:.3f}x  "
          f"cpu {med['this'][1] / med['baseline'][1]:.3f}x"
          f"   (load after: {os.getloadavg()}, {time.strftime('%H:%M:%S')})")


if __name__ == "__main__":
    main()
