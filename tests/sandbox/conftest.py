import os

import pytest

from sandbox import SandboxPool


def slot_uid_processes(pool: SandboxPool) -> list[int]:
    """Pids running as one of the pool's slot uids, other than its bwrap and harness processes."""
    uids = set(pool._uids.uids) if pool._uids else set()
    keep = set()
    for w in pool.workers:
        if w.proc is not None:
            keep.add(w.proc.pid)
            try:
                keep.update(int(p) for p in open(f"/proc/{w.proc.pid}/task/{w.proc.pid}/children").read().split())
            except OSError:
                pass
    found = []
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) in keep:
            continue
        try:
            status = open(f"/proc/{e}/status").read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["Uid"].split()[0]) in uids and not fields["State"].strip().startswith("Z"):
            found.append(int(e))
    return found


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, timeout_s=2.0, program_timeout_s=20.0) as p:
        yield p
