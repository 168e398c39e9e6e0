"""Thread sizing: every process of a run (the driver and each actor) asks torch and OpenMP for the
cores it was given, not for all of the machine's. Several processes that each start one thread per
core oversubscribe the CPU, and OpenMP threads that spin-wait on busy cores turn a minute of work
into a quarter of an hour."""
from __future__ import annotations

import os

_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask; cgroup quotas aside)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_for(explicit: int, num_cpus: float | None) -> int:
    """``explicit`` when set (> 0); else the Ray ``num_cpus`` an actor holds (at least 1); else, for
    the driver (``num_cpus=None``), the cores it may run on."""
    if explicit > 0:
        return explicit
    if num_cpus is None:
        return available_cores()
    return max(1, int(num_cpus))


def size_threads(n: int) -> int:
    """Use ``n`` intra-op threads in this process; child processes inherit it through the environment."""
    import torch

    n = max(1, int(n))
    torch.set_num_threads(n)
    for var in _ENV:
        os.environ[var] = str(n)
    return n
