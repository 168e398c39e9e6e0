"""One sandbox slot on the host: the worker process and its wire.

A worker is one bwrap sandbox whose pid 1 is the warm interpreter (sandbox/harness.py). ``Worker``
spawns it (from the one long-lived ``Spawner`` thread), writes each job's request as a length-prefixed
frame, reads the frames the harness relays (every frame carries the job's sequence number), has the
tests decided on the host (sandbox/verdicts.py) and kills and restarts the process when it breaks.
Scheduling jobs over the workers is sandbox/pool.py's.
"""
from __future__ import annotations

import json
import os
import queue
import select
import signal
import struct
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from typing import Callable

from . import cgroups as cg
from .checks import TestPlan
from .expected_cache import ExpectedValueCache, hole_key
from .isolation import (HARNESS_PATH, SandboxUnavailable, bwrap_argv, data_fd, discover_interpreter, kill_uid,
                        seccomp_filter_fd, unsafe_argv)
from .rewrite import ProgramNames, clean_holes, plan_setup
from .types import Job, Result, SandboxConfig, TestResult
from .verdicts import JobState, ProtocolError, _json, judge, skip_after_failure

_HDR = struct.Struct(">I")
_SEQ = struct.Struct(">I")
_STDERR_KEEP = 8192


class Spawner:
    """Starts every worker from one long-lived thread: bwrap --die-with-parent is tied to the
    thread that spawned it, so a worker must not be spawned from a thread that may exit first."""

    def __init__(self) -> None:
        self._q: queue.Queue = queue.Queue()
        self._t = threading.Thread(target=self._loop, name="sandbox-spawner", daemon=True)
        self._t.start()

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, fut = item
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                fut.set_exception(e)

    def call(self, fn: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        fut: Future = Future()
        self._q.put((fn, fut))
        return fut.result()

    def close(self) -> None:
        self._q.put(None)


class Worker:
    """One sandbox slot: a bwrap process running the harness, restarted when it breaks."""

    def __init__(self, slot: int, cfg: SandboxConfig, spawner: Spawner, uid: int | None,
                 cgroups: cg.SlotCgroups | None, expected: ExpectedValueCache | None = None):
        self.slot, self.cfg, self.spawner, self.uid, self.cgroups = slot, cfg, spawner, uid, cgroups
        self.expected = expected  # the pool's expected values, for jobs with reuse_expected
        self.proc: subprocess.Popen | None = None
        self._buf = bytearray()
        self._stderr = bytearray()
        self._scratch: str | None = None
        self.restarts = 0
        self._seq = 0  # job sequence number: every frame of a job carries it
        self._memory_bytes: int | None = None
        self._oom_kills = 0  # the slot's OOM-kill counter when it was last read

    # -- life cycle
    def start(self) -> None:
        cfg = self.cfg
        interp = discover_interpreter(cfg.python)
        fds: list[int] = []
        procs_files = self.cgroups.procs_files(self.slot) if self.cgroups else []
        if cfg.unsafe_no_isolation:
            self._scratch = tempfile.mkdtemp(prefix="sandbox-unsafe-")
            argv = unsafe_argv(interp, self._scratch)
        else:
            if self.uid is not None:
                kill_uid(self.uid)  # nothing from an earlier life of this slot survives
            fds = [seccomp_filter_fd(), data_fd(HARNESS_PATH.read_bytes(), "sandbox-harness")]
            cpu_file = self.cgroups.cpu_usage_file(self.slot) if self.cgroups else None
            if cpu_file is not None:  # the harness charges the slot's CPU usage (unreaped children too)
                fds.append(os.open(cpu_file, os.O_RDONLY))
            argv = bwrap_argv(cfg, interp, self.uid, fds[0], fds[1], fds[2] if cpu_file else None)
        root = os.getuid() == 0

        def preexec() -> None:  # runs in the child between fork and exec: raw syscalls only
            for f in procs_files:
                fd = os.open(f, os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
            if root:  # the harness is never the OOM killer's choice; its children are (they set 1000)
                try:
                    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
                    try:
                        os.write(fd, b"-1000")
                    finally:
                        os.close(fd)
                except OSError:
                    pass  # not allowed in some containers: the children's 1000 still ranks them first

        def spawn() -> subprocess.Popen:
            return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    pass_fds=fds, env={}, preexec_fn=preexec, start_new_session=True)

        try:
            self.proc = self.spawner.call(spawn)
        finally:
            for fd in fds:
                os.close(fd)
        self._buf.clear()
        self._stderr.clear()
        for fd in (self.proc.stdout.fileno(), self.proc.stderr.fileno()):  # type: ignore[union-attr]
            os.set_blocking(fd, False)
        frames = self._read_frames(time.monotonic() + 60)
        if not frames or frames[0][:5] != b"\0\0\0\0R":
            err = self._stderr.decode(errors="replace").strip()
            self.kill()
            raise SandboxUnavailable(f"sandbox worker {self.slot} failed to start: {err or 'no output'}")
        self.info = _json(frames[0][5:])

    def kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.kill()
            self.proc.wait()
            for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if s is not None:
                    s.close()
            self.proc = None
        if self.cgroups is not None:
            self.cgroups.kill_slot(self.slot)
        if self.uid is not None:
            deadline = time.monotonic() + 5
            while kill_uid(self.uid) and time.monotonic() < deadline:
                time.sleep(0.01)
        if self._scratch:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # -- frames
    def _read_frames(self, deadline: float) -> list[bytes] | None:
        """Frames available now, waiting until at least one arrives; None on EOF or at the deadline."""
        assert self.proc is not None
        out, err = self.proc.stdout.fileno(), self.proc.stderr.fileno()  # type: ignore[union-attr]
        while True:
            frames = []
            while len(self._buf) >= 4:
                n = _HDR.unpack_from(self._buf)[0]
                if n > self.cfg.value_limit_bytes + self.cfg.output_limit_bytes + (1 << 17) or n < 5:
                    return None  # a harness that sends this is broken: restart it
                if len(self._buf) < 4 + n:
                    break
                frames.append(bytes(self._buf[4:4 + n]))
                del self._buf[:4 + n]
            if frames:
                return frames
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([out, err], [], [], left)
            if err in r:
                try:
                    data = os.read(err, 65536)
                except BlockingIOError:
                    data = b"x"
                if data and data != b"x":
                    self._stderr += data
                    del self._stderr[:-_STDERR_KEEP]
            if out in r:
                try:
                    data = os.read(out, 1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    return None
                self._buf += data

    # -- one job
    def run(self, job: Job, plans: list[TestPlan], early_stop: bool = False) -> Result:
        """Run one job. ``early_stop`` (stop-at-first-failure jobs): the harness ends the job after the first
        test whose value is not byte for byte the literal it is compared with (checks.equal_payload)."""
        cfg = self.cfg
        t0 = time.monotonic()
        runnable = [i for i, p in enumerate(plans) if p.mode != "invalid"]
        st = JobState(len(plans))
        setup = plan_setup(job.setup)
        if not runnable:
            return Result(job.id, tuple(judge(p, st, i, setup) for i, p in enumerate(plans)))
        if self.proc is None or self.proc.poll() is not None:
            self.restart()
        timeout = job.timeout_s or cfg.timeout_s
        memory_mb = job.memory_mb or cfg.memory_mb
        wall = cfg.wall_factor * timeout + 1.0
        names = ProgramNames(job.program)
        tests = [plans[i].to_wire(i, clean_holes(plans[i], setup, names)) for i in runnable]
        if job.reuse_expected and self.expected is not None:
            self._reuse_expected(tests, plans, setup.src, st)
        if early_stop:
            for t in tests:
                fast = plans[t["k"]].equal_payload
                if fast is not None:
                    t["expect"] = fast[1].decode("ascii")
        if job.test_timeouts_s is not None:  # per-test budgets: the harness times each test by its own
            for t in tests:
                t["cpu_s"] = job.test_timeouts_s[t["k"]]
                t["wall_s"] = cfg.wall_factor * t["cpu_s"] + 1.0
        program_wall = max(cfg.program_timeout_s, wall, *(t.get("wall_s", 0.0) for t in tests))
        if self._buf:  # bytes of an earlier job: never read them as this one's
            self.restart()
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = _SEQ.pack(self._seq)
        request = {
            "seq": self._seq, "program": job.program, "setup": setup.src, "tests": tests,
            "stop_at_first_failure": job.stop_at_first_failure, "early_stop": early_stop,
            "limits": {"test_cpu_s": timeout, "test_wall_s": wall, "program_wall_s": program_wall,
                       "memory_bytes": memory_mb << 20, "fsize_bytes": cfg.file_size_mb << 20,
                       "nofile": cfg.max_open_files,
                       "nproc": cfg.max_processes if self.uid is not None else None},
            "value_cap": cfg.value_limit_bytes, "output_cap": cfg.output_limit_bytes,
        }
        if self.cgroups is not None:
            want = self._slot_memory(memory_mb)
            if want != self._memory_bytes:
                self.cgroups.set_memory(self.slot, want)
                self._memory_bytes = want
        index = {i: i for i in runnable}
        payload = json.dumps(request).encode()
        broken = False
        try:
            self.proc.stdin.write(_HDR.pack(len(payload)) + payload)  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            broken = True
        deadline = t0 + program_wall + 10.0
        while not broken and not st.finished:
            frames = self._read_frames(deadline)
            if frames is None:
                broken = True
                break
            for f in frames:
                try:
                    if f[:4] != seq:
                        raise ProtocolError("a frame of another job")
                    st.apply(f[4:], index)
                except ProtocolError:
                    broken = True  # the worker is restarted below; its unread frames die with it
                    break
            if broken:
                break
        if broken:
            self.kill()
            why = TestResult("crashed", "sandbox_worker", "the sandbox worker died or stopped answering")
            for i in runnable:
                if st.verdict[i] is None and not st.done[i] and st.exc[i] is None:
                    st.verdict[i] = why
        if self.proc is not None and self.proc.poll() is not None:
            self.kill()  # bwrap's monitor is gone: the job finished, but start afresh next time
        elif self.proc is not None and st.stats.get("scratch_left"):
            self.kill()  # the harness could not empty /tmp: no later program may see what is left
        # values come from the clean child only when it ran: if the setup failed there, the program's child
        # computed them (after the program), and they must not reach a later job
        if not broken and not st.tampered and self.expected is not None and not st.stats.get("clean_failed"):
            for ij, payload in st.kept.items():
                self.expected.put(st.keep[ij], payload)
        results = [judge(p, st, i, setup) for i, p in enumerate(plans)]
        if not broken:
            oom = False
            if self.cgroups is not None and any(r.status == "crashed" for r in results):
                # the slot's OOM-kill counter is read only when something died: it is a file read
                kills = self.cgroups.oom_kills(self.slot)
                oom, self._oom_kills = kills > self._oom_kills, kills
            results = self._explain(results, oom)
        if job.stop_at_first_failure:
            results = skip_after_failure(results)
        return Result(job.id, tuple(results), output=st.output.decode("utf-8", errors="replace"),
                      cpu_s=_float(st.stats.get("cpu_s", 0.0)),
                      expected_cpu_s=_float(st.stats.get("expected_cpu_s", 0.0)), wall_s=time.monotonic() - t0)

    def _reuse_expected(self, tests: list[dict], plans: list[TestPlan], setup_src: str, st: JobState) -> None:
        """Clean holes whose values the pool has: the host fills them in and the sandbox skips them
        ("known"); the others are computed as usual and their values kept for later jobs."""
        assert self.expected is not None
        for t in tests:
            if not t.get("clean"):
                continue
            i, left, known = t["k"], [], []
            for j in t["clean"]:
                key = hole_key(setup_src, plans[i], j)
                payload = self.expected.get(key)
                if payload is None:
                    left.append(j)
                    st.keep[(i, j)] = key
                else:
                    known.append(j)
                    st.values[i][j] = payload  # decoded afresh for this job, like a V frame
            t["clean"], t["known"] = left, known

    def _slot_memory(self, memory_mb: int) -> int:
        return slot_memory_bytes(self.cfg, memory_mb)

    @staticmethod
    def _explain(results: list[TestResult], oom: bool) -> list[TestResult]:
        """Name the limit a program hit, so a user sees 'memory' rather than 'exit -9'."""
        out = []
        for r in results:
            if oom and r.status == "crashed" and r.reason in ("died", ""):
                r = TestResult("crashed", "memory", "killed at the sandbox memory limit")
            elif r.status == "error" and "MemoryError" in r.reason + r.detail:
                r = TestResult("error", "memory", r.detail)
            elif r.status == "error" and "BlockingIOError" in r.reason + r.detail and "temporarily" in r.detail:
                r = TestResult("error", "processes", f"process limit reached: {r.detail}")  # fork() got EAGAIN
            out.append(r)
        return out

    def restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()


def slot_memory_bytes(cfg: SandboxConfig, memory_mb: int) -> int:
    """A slot's cgroup memory limit: as configured, else the program's address space plus its tmpfs
    plus room for the harness."""
    if cfg.slot_memory_mb:
        return max(cfg.slot_memory_mb, 64) << 20
    return (memory_mb + cfg.tmpfs_mb + 256) << 20


def _float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
