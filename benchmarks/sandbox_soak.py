"""Soak test of one sandbox pool: many programs (MBPP's canonical solutions, repeated), then checks
that nothing leaked and nothing slowed down.

Prints: leaked processes (running as the pool's slot uids), leaked file descriptors and temporary
files of this process, leaked cgroups, the host-side memory (RSS) of the pool's process at the start
and the end, and the throughput of the first and the last 10% of the programs.

    python benchmarks/sandbox_soak.py [--programs 20000] [--workers 2]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import Job, SandboxPool  # noqa: E402


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def uid_processes(uids: set[int]) -> list[int]:
    found = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in open(f"/proc/{e}/status") if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) in uids and not fields["State"].strip().startswith("Z"):
            found.append(int(e))
    return found


def snapshot() -> dict:
    return {"fds": len(os.listdir("/proc/self/fd")), "tmp": set(os.listdir(tempfile.gettempdir())),
            "cgroups": set(glob.glob("/sys/fs/cgroup/**/acecoder-sandbox-*", recursive=True))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--data", default=os.environ.get("ACECODER_DATA_DIR",
                                                     str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(Path(args.data) / "mbpp.jsonl")]
    base = [Job(f"mbpp_{r['task_id']}", r["code"].replace("\r\n", "\n"), tuple(r["test_list"]),
                setup=r["test_setup_code"]) for r in rows]
    jobs = [Job(f"{b.id}#{i}", b.program, b.tests, setup=b.setup) for i, b in
            enumerate(base[j % len(base)] for j in range(args.programs))]
    before = snapshot()
    tenth = max(1, len(jobs) // 10)
    stamps, rss, failures = [], [], 0
    with SandboxPool(workers=args.workers) as pool:
        uids = set(pool._uids.uids) if pool._uids else set()
        t0 = time.perf_counter()
        for i, res in enumerate(pool.imap(jobs), start=1):
            failures += not res.all_passed
            if i % tenth == 0:
                stamps.append(time.perf_counter())
                rss.append(rss_mb())
        total = time.perf_counter() - t0
        restarts = sum(w.restarts for w in pool.workers)
    time.sleep(0.5)
    after = snapshot()
    first = tenth / (stamps[0] - t0)
    last = tenth / (stamps[-1] - stamps[-2])
    figures = {
        "programs": len(jobs), "seconds": round(total, 1), "programs_per_s": round(len(jobs) / total, 1),
        "not_all_passed": failures, "worker_restarts": restarts,
        "leaked_processes": len(uid_processes(uids)), "leaked_fds": after["fds"] - before["fds"],
        "leaked_tmp_files": sorted(after["tmp"] - before["tmp"]),
        "leaked_cgroups": sorted(after["cgroups"] - before["cgroups"]),
        "rss_mb_first_10pct": round(rss[0], 1), "rss_mb_last_10pct": round(rss[-1], 1),
        "throughput_first_10pct": round(first, 1), "throughput_last_10pct": round(last, 1),
        "last_vs_first": round(last / first, 3),
    }
    for k, v in figures.items():
        print(f"{k:24s} {v}")
    ok = (figures["leaked_processes"] == 0 and figures["leaked_fds"] <= 0 and not figures["leaked_tmp_files"]
          and not figures["leaked_cgroups"] and figures["last_vs_first"] >= 0.9)
    print("soak:", "PASS" if ok else "FAIL")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
