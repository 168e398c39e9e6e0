"""Per-slot cgroups for the sandbox pool: a memory limit that counts tmpfs and allows no swap, a
process limit, a cap on the whole pool, and each slot's CPU usage (which the harness reads to charge
CPU spent by processes a program leaves running), on cgroup v1 (memory + pids hierarchies, and
cpuacct where it can be written) or v2.

Layout: <own cgroup>/acecoder-sandbox-<random id>/slot<i>. The pool directory carries the node-level
memory cap; each slot carries its own limits. The owning pool holds an exclusive flock on its pool
directory for as long as it lives; a directory whose lock can be taken has no owner and is removed
when the next pool starts, so a crash leaks nothing for long. Ownership is the lock, not a pid:
pools in different pid namespaces (containers) sharing one cgroup tree never take each other's.
"""
from __future__ import annotations

import fcntl
import os
import re
import secrets
import signal
import time

ROOT = "/sys/fs/cgroup"
_PREFIX = "acecoder-sandbox-"
_NAME = re.compile(re.escape(_PREFIX) + r"[0-9a-f]{16}")


class CgroupError(RuntimeError):
    pass


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _own_path(controller: str | None) -> str:
    """This process's cgroup path for a v1 controller (or the v2 path when controller is None)."""
    for line in _read("/proc/self/cgroup").splitlines():
        _, ctrls, path = line.split(":", 2)
        if (controller is None and ctrls == "") or (controller and controller in ctrls.split(",")):
            return path.rstrip("/")
    raise CgroupError(f"this process is in no cgroup for {controller or 'v2'}")


def _counter_in(path: str, key: str) -> int:
    try:
        for line in _read(path).splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except OSError:
        pass
    return 0


def detect() -> str | None:
    """'v1', 'v2' or None: which cgroup interface this process may create children in."""
    if os.path.exists(f"{ROOT}/cgroup.controllers"):
        try:
            base = ROOT + _own_path(None)
            ctrls = _read(f"{base}/cgroup.controllers").split()
            if "memory" in ctrls and "pids" in ctrls and os.access(base, os.W_OK):
                return "v2"
        except (OSError, CgroupError):
            return None
        return None
    try:
        mem = f"{ROOT}/memory{_own_path('memory')}"
        pids = f"{ROOT}/pids{_own_path('pids')}"
    except (OSError, CgroupError):
        return None
    if os.access(mem, os.W_OK) and os.access(pids, os.W_OK):
        return "v1"
    return None


def _kill_procs(procs_file: str) -> None:
    for _ in range(50):
        try:
            pids = [int(p) for p in _read(procs_file).split()]
        except OSError:
            return
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _rmtree_cgroup(path: str) -> None:
    """Kill what runs in a cgroup subtree and remove it, leaves first."""
    if not os.path.isdir(path):
        return
    for entry in sorted(os.listdir(path)):
        sub = os.path.join(path, entry)
        if os.path.isdir(sub):
            _rmtree_cgroup(sub)
    _kill_procs(os.path.join(path, "cgroup.procs"))
    for _ in range(100):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def _try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on the directory ``path``, or None if another holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _sweep_stale(parent: str) -> None:
    """Remove the pool directories under ``parent`` whose owner is gone (their lock can be taken)."""
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for e in entries:
        if not _NAME.fullmatch(e):
            continue  # not ours (names of older versions carry a pid: they are left alone)
        try:
            fd = _try_lock(os.path.join(parent, e))
        except OSError:
            continue
        if fd is not None:
            try:
                _rmtree_cgroup(os.path.join(parent, e))
            finally:
                os.close(fd)


def _make_owned(parent: str) -> tuple[str, int]:
    """Create a pool directory under ``parent`` with a fresh random name, and lock it. A sweep by another
    pool can lock and remove a directory in the instant between its mkdir and our lock: then retry."""
    for _ in range(10):
        path = f"{parent}/{_PREFIX}{secrets.token_hex(8)}"
        os.mkdir(path)
        fd = _try_lock(path)
        if fd is not None:
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return path, fd
            except FileNotFoundError:
                pass
            os.close(fd)
    raise CgroupError(f"could not create a pool cgroup under {parent}")


class SlotCgroups:
    """The cgroups of one pool: ``procs_files(i)`` are written with a worker's pid before it execs."""

    def __init__(self, version: str, workers: int, slot_memory_bytes: int, pool_memory_bytes: int | None,
                 pids_max: int):
        self.version = version
        self.pool_limit = pool_memory_bytes
        self._locks: list[int] = []  # held while the pool lives: they prove its directories are ours
        self.cpu_pool: str | None = None
        self.cpu_files: list[str | None] = [None] * workers
        try:
            self._create(workers, slot_memory_bytes, pool_memory_bytes, pids_max)
        except BaseException:
            self.close()
            raise

    def _own(self, parent: str) -> str:
        _sweep_stale(parent)
        path, fd = _make_owned(parent)
        self._locks.append(fd)
        return path

    def _create(self, workers: int, slot_memory_bytes: int, pool_memory_bytes: int | None, pids_max: int) -> None:
        self.mem_pool = self.pids_pool = self.pool = None
        if self.version == "v1":
            mem_parent = f"{ROOT}/memory{_own_path('memory')}"
            pids_parent = f"{ROOT}/pids{_own_path('pids')}"
            self.mem_pool, self.pids_pool = self._own(mem_parent), self._own(pids_parent)
            cpu_parent = _v1_cpuacct_parent()
            if cpu_parent is not None:
                self.cpu_pool = self._own(cpu_parent)
            if pool_memory_bytes:
                _write(f"{self.mem_pool}/memory.limit_in_bytes", str(pool_memory_bytes))
            self.slots = []
            for i in range(workers):
                mem, pids = f"{self.mem_pool}/slot{i}", f"{self.pids_pool}/slot{i}"
                os.makedirs(mem)
                os.makedirs(pids)
                _write(f"{mem}/memory.limit_in_bytes", str(slot_memory_bytes))
                if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
                    _write(f"{mem}/memory.memsw.limit_in_bytes", str(slot_memory_bytes))  # no swap
                try:
                    _write(f"{mem}/memory.swappiness", "0")
                except OSError:
                    pass
                _write(f"{pids}/pids.max", str(pids_max))
                self.slots.append((mem, pids))
                if self.cpu_pool is not None:
                    os.makedirs(f"{self.cpu_pool}/slot{i}")
                    self.cpu_files[i] = f"{self.cpu_pool}/slot{i}/cpuacct.usage"
        else:
            parent = ROOT + _own_path(None)
            self._enable_controllers(parent)
            self.pool = self._own(parent)
            if pool_memory_bytes:
                _write(f"{self.pool}/memory.max", str(pool_memory_bytes))
            _write(f"{self.pool}/cgroup.subtree_control", "+memory +pids")
            self.slots = []
            for i in range(workers):
                d = f"{self.pool}/slot{i}"
                os.makedirs(d)
                _write(f"{d}/memory.max", str(slot_memory_bytes))
                _write(f"{d}/memory.swap.max", "0")
                _write(f"{d}/pids.max", str(pids_max))
                self.slots.append((d, d))
                if os.path.exists(f"{d}/cpu.stat"):  # kept by every v2 cgroup, cpu controller or not
                    self.cpu_files[i] = f"{d}/cpu.stat"

    @staticmethod
    def _enable_controllers(parent: str) -> None:
        """v2 forbids processes in a cgroup that delegates controllers: move ours to a leaf first."""
        try:
            _write(f"{parent}/cgroup.subtree_control", "+memory +pids")
            return
        except OSError:
            pass
        leaf = f"{parent}/host"
        os.makedirs(leaf, exist_ok=True)
        for p in _read(f"{parent}/cgroup.procs").split():
            try:
                _write(f"{leaf}/cgroup.procs", p)
            except OSError:
                pass
        _write(f"{parent}/cgroup.subtree_control", "+memory +pids")

    def procs_files(self, slot: int) -> list[str]:
        mem, pids = self.slots[slot]
        files = [f"{mem}/cgroup.procs"] if mem == pids else [f"{mem}/cgroup.procs", f"{pids}/cgroup.procs"]
        if self.version == "v1" and self.cpu_files[slot] is not None:
            files.append(f"{self.cpu_pool}/slot{slot}/cgroup.procs")
        return files

    def cpu_usage_file(self, slot: int) -> str | None:
        """The file holding the slot's CPU usage (v1 cpuacct.usage in ns, v2 cpu.stat usage_usec), if any."""
        return self.cpu_files[slot]

    def set_memory(self, slot: int, nbytes: int) -> None:
        mem, _ = self.slots[slot]
        if self.version == "v1":
            # memsw must stay >= the memory limit: order the two writes accordingly
            memsw = f"{mem}/memory.memsw.limit_in_bytes"
            cur = int(_read(f"{mem}/memory.limit_in_bytes"))
            files = [f"{mem}/memory.limit_in_bytes"] + ([memsw] if os.path.exists(memsw) else [])
            for f in (files if nbytes < cur else reversed(files)):
                _write(f, str(nbytes))
        else:
            _write(f"{mem}/memory.max", str(nbytes))

    def oom_kills(self, slot: int) -> int:
        mem, _ = self.slots[slot]
        if self.version == "v1":
            return _counter_in(f"{mem}/memory.oom_control", "oom_kill")
        return _counter_in(f"{mem}/memory.events", "oom_kill")

    def memory_usage(self, slot: int | None = None) -> int:
        if slot is None:
            path = f"{self.mem_pool}/memory.usage_in_bytes" if self.version == "v1" else f"{self.pool}/memory.current"
        else:
            mem, _ = self.slots[slot]
            path = f"{mem}/memory.usage_in_bytes" if self.version == "v1" else f"{mem}/memory.current"
        return int(_read(path))

    def peak_memory(self) -> int | None:
        """Highest memory use of the whole pool since it started (None where the kernel keeps none)."""
        path = f"{self.mem_pool}/memory.max_usage_in_bytes" if self.version == "v1" else f"{self.pool}/memory.peak"
        try:
            return int(_read(path))
        except (OSError, ValueError):
            return None

    def kill_slot(self, slot: int) -> None:
        for f in self.procs_files(slot):
            _kill_procs(f)

    def close(self) -> None:
        for path in (self.mem_pool, self.pids_pool, self.cpu_pool, self.pool):
            if path is not None:
                _rmtree_cgroup(path)
        for fd in self._locks:  # released only once the directories are gone
            os.close(fd)
        self._locks.clear()


def _v1_cpuacct_parent() -> str | None:
    """This process's cgroup in the v1 cpuacct hierarchy, if it can create children there."""
    try:
        own = _own_path("cpuacct")
    except (OSError, CgroupError):
        return None
    for mount in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
        path = f"{ROOT}/{mount}{own}"
        if os.path.exists(f"{path}/cpuacct.usage") and os.access(path, os.W_OK):
            return path
    return None
