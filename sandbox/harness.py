"""The warm interpreter that runs INSIDE the sandbox (bwrap + seccomp), as pid 1 of its pid namespace.

Security boundary: this file is the inside half. It imports only the standard library and shares
no module with the host-side pool (sandbox/pool.py and friends): the host copies it into the sandbox.

Life cycle: start (as root only to drop to this slot's own unprivileged uid), make itself
non-dumpable, pre-import common modules, then serve jobs read from fd 0 forever. For each job it
forks a child that runs the program once and then the tests in order. The child reports each
test's values or exception as frames on a private pipe; this process checks that the frames belong
to the test it is timing (any other frame is tampering: the program wrote to the pipe itself, and the
whole program fails), relays them to the host (fd 1) and enforces the per-test CPU budget, the
per-test wall backstop and the per-program deadline from outside the child. If the child dies or
hangs at test k, test k is reported and a fresh child resumes at k + 1. After every child: kill every
other process in the namespace, reap them, and wipe the scratch directory.

Frames (both directions): 4-byte big-endian length, then the payload. The first payload byte is
the frame type. Child -> harness -> host:
  L                      the program ran to completion
  P <json exc>           the program raised (or called sys.exit)
  V <u32 k><u16 j><val>  test k, expression j evaluated to <val> (strict JSON encoding below)
  E <u32 k><u16 j><exc>  test k, expression j (or the exec body) raised
  D <u32 k>              the child finished test k
Child frames carry, before the type byte, a 16-byte token drawn afresh for every fork.
Harness -> host only:
  R <json>               ready, once at start-up
  X <json>               the program tampered with the result channel: every test fails
  T <i32 k><json>        test k timed out (k = -1: the program itself, before any test)
  C <i32 k><json>        the child died during test k (k = -1: while running the program)
  O <bytes>              the program's first stdout/stderr bytes (capped)
  Z <json>               the job is over (CPU time, forks)
"""
import builtins
import collections
import ctypes
import fcntl
import gc
import json
import os
import resource
import select
import signal
import struct
import sys
import time

# Modules most solutions import: importing them here once makes every forked child start warm.
# (threading is left out on purpose: it makes every fork slower.)
# Each pre-imported megabyte costs every fork ~0.06 ms here; typing alone saves a program ~12 ms.
import bisect, functools, heapq, itertools, math, operator, re, string, typing  # noqa: E401,F401

_PRISTINE_BUILTINS = tuple(builtins.__dict__.items())  # immutable snapshot taken before any program
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_DUMPABLE = 4
_HDR = struct.Struct(">I")
_KJ = struct.Struct(">IH")
_K = struct.Struct(">i")
_CLK = os.sysconf("SC_CLK_TCK")

# Captured once so a program that rebinds builtins cannot change how values are encoded.
_type, _len, _hex, _isinstance, _bool = type, len, hex, isinstance, bool
_EXACT_LIST, _EXACT_TUPLE, _EXACT_DICT = list, tuple, dict
_ORDERED, _DEFAULTDICT, _COUNTER, _DEQUE = (collections.OrderedDict, collections.defaultdict,
                                           collections.Counter, collections.deque)
_MODULES = sys.modules


class _TooLarge(Exception):
    pass


class _Unencodable(Exception):
    pass


def encode_value(value, cap):
    """Strict JSON encoding of a test value: exact builtin types (and a few stdlib containers) only.

    Anything else, an object with a custom __eq__ among them, is refused, so no object made by the
    program ever reaches the comparison: the host rebuilds plain values from this text and compares.
    """
    budget = [cap]

    def enc(v, depth):
        if depth > 100:
            raise _Unencodable("value nested deeper than 100 levels")
        budget[0] -= 8
        if budget[0] < 0:
            raise _TooLarge()
        t = _type(v)
        if v is None or t is bool:
            return v
        if t is int:
            if -(1 << 53) < v < (1 << 53):
                return v
            s = _hex(v)
            budget[0] -= _len(s)
            return {"i": s}
        if t is float:
            return {"f": v.hex()}
        if t is str:
            budget[0] -= _len(v)
            if budget[0] < 0:
                raise _TooLarge()
            return v
        if t is complex:
            return {"c": [v.real.hex(), v.imag.hex()]}
        if t is bytes or t is bytearray:
            budget[0] -= 2 * _len(v)
            if budget[0] < 0:
                raise _TooLarge()
            return {("b" if t is bytes else "ba"): v.hex()}
        if t is _EXACT_LIST:
            return [enc(x, depth + 1) for x in v]
        if t is _EXACT_TUPLE:
            return {"t": [enc(x, depth + 1) for x in v]}
        if t is set or t is frozenset:
            return {("s" if t is set else "fs"): [enc(x, depth + 1) for x in v]}
        if t is _EXACT_DICT or t is _DEFAULTDICT:
            return {"d": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in _EXACT_DICT.items(v)]}
        if t is _ORDERED:
            return {"od": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in _EXACT_DICT.items(v)]}
        if t is _COUNTER:
            return {"ctr": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in _EXACT_DICT.items(v)]}
        if t is _DEQUE:
            return {"dq": [enc(x, depth + 1) for x in v]}
        if t is range:
            return {"r": [v.start, v.stop, v.step]}
        # decimal and fractions are not pre-imported (they would slow every fork): if the program
        # made such a value, the module is loaded. Whatever text is sent, the host builds its own.
        dm, fm = _MODULES.get("decimal"), _MODULES.get("fractions")
        if dm is not None and t is getattr(dm, "Decimal", None):
            return {"dec": str(v)}
        if fm is not None and t is getattr(fm, "Fraction", None):
            return {"fr": [_hex(v.numerator), _hex(v.denominator)]}
        if hasattr(t, "__next__") and hasattr(t, "__iter__"):
            # generators, map(), zip(), ...: the items go out; the host keeps iterator semantics
            items = []
            for x in v:
                items.append(enc(x, depth + 1))
                if budget[0] < 0:
                    raise _TooLarge()
            return {"it": items}
        # A namedtuple that keeps tuple's own equality compares like the plain tuple.
        if _isinstance(v, _EXACT_TUPLE) and hasattr(t, "_fields") and t.__eq__ is tuple.__eq__:
            return {"t": [enc(x, depth + 1) for x in _EXACT_TUPLE.__iter__(v)]}
        raise _Unencodable("values of type %s cannot be compared outside the sandbox"
                           % getattr(t, "__qualname__", "?")[:80])

    try:
        text = json.dumps(enc(value, 0), ensure_ascii=True, separators=(",", ":"),
                          check_circular=False, allow_nan=False)
    except RecursionError:
        raise _Unencodable("value nested too deeply") from None
    if _len(text) > cap:
        raise _TooLarge()
    return text.encode("ascii")


def _exc_info(e):
    """Type name and a short message, safely: str() of a hostile exception may itself raise."""
    try:
        msg = str(e)[:300]
    except BaseException:
        msg = "<unprintable>"
    return json.dumps({"type": _type(e).__name__[:100], "msg": msg}).encode()


# ----------------------------------------------------------------------------- child side
_TOKEN_BYTES = 16


def _child(job, start, res_w, out_w, devnull, token):
    """Runs in the forked child: never returns."""
    try:
        os.setpgid(0, 0)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        fd = os.dup2(res_w, 3)
        os.closerange(4, 1 << 16)
        # Dumpable again (this process holds no secret) so that its /proc files are its own, and
        # first in line for the OOM killer so that under memory pressure the program dies, not pid 1.
        _LIBC.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
        try:  # raw os calls: the io stack would touch (and copy) far more of the parent's memory
            oom = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(oom, b"1000")
            os.close(oom)
        except OSError:
            pass
        lim = job["limits"]
        R = resource
        for name, value in (("RLIMIT_AS", lim.get("memory_bytes")), ("RLIMIT_FSIZE", lim.get("fsize_bytes")),
                            ("RLIMIT_NOFILE", lim.get("nofile")), ("RLIMIT_NPROC", lim.get("nproc")),
                            ("RLIMIT_CPU", lim.get("cpu_total_s")), ("RLIMIT_CORE", 0)):
            if value is not None:
                R.setrlimit(getattr(R, name), (int(value), int(value)))
        if job.get("scratch"):
            os.chdir(job["scratch"])
    except BaseException as e:  # set-up failure is a harness problem: report it as a crash
        os.write(2, ("sandbox child set-up failed: %r\n" % (e,)).encode())
        os._exit(70)

    pending = []

    def send(payload):
        """Queue a frame; D (a test's end) flushes the test's frames in one write."""
        pending.append(_HDR.pack(len(payload) + _TOKEN_BYTES) + token + payload)
        if payload[:1] in (b"D", b"L", b"P"):
            os.write(fd, b"".join(pending))
            pending.clear()

    cap = int(job["value_cap"])
    g = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        exec(_code(job["_program"]), g)
        if job["_setup"] is not None:
            exec(_code(job["_setup"]), g)
    except BaseException as e:
        _flush_stdio()
        send(b"P" + _exc_info(e))
        os._exit(0)
    send(b"L")
    # Tests see the builtins as they were before the program ran (a program's own functions keep
    # whatever builtins they were defined with). The dict was made by the parent for this job:
    # copying it here would cost every child ~0.2 ms of copy-on-write faults.
    g["__builtins__"] = job["_builtins"]
    sys.settrace(None)
    sys.setprofile(None)
    stop = job.get("stop_at_first_failure")
    for test in job["tests"][start:]:
        k = test["k"]
        raised = False
        if test["mode"] == "eval":
            if test["_pre"] is not None:
                try:
                    exec(_code(test["_pre"]), g)
                except BaseException as e:
                    send(b"E" + _KJ.pack(k, 0) + _exc_info(e))
                    send(b"D" + _KJ.pack(k, 0)[:4])
                    if stop:
                        break
                    continue
            truth = test.get("truth", ())
            for j, code in enumerate(test["_exprs"]):
                try:
                    value = eval(_code(code), g)
                    if j in truth:
                        value = _bool(value)
                    payload = encode_value(value, cap)
                except _TooLarge:
                    send(b"E" + _KJ.pack(k, j) + json.dumps({"type": "ValueTooLarge",
                                                             "msg": "value over %d bytes" % cap}).encode())
                    raised = True
                    break
                except BaseException as e:
                    send(b"E" + _KJ.pack(k, j) + _exc_info(e))
                    raised = True
                    break
                send(b"V" + _KJ.pack(k, j) + payload)
        else:
            try:
                exec(_code(test["_src"]), g)
            except BaseException as e:
                send(b"E" + _KJ.pack(k, 0) + _exc_info(e))
                raised = True
        send(b"D" + _KJ.pack(k, 0)[:4])
        if stop and raised:  # stop-at-first-failure: the harness sees the E frame and expects nothing more
            break
    _flush_stdio()
    os._exit(0)  # also ends any non-daemon thread the program started


def _compile(src, name, mode):
    """Compiled here, in the warm parent, so that no child pays for the compiler: a first compile
    in a fresh fork costs ~1.7 ms of copy-on-write faults. Errors travel as the exception, raised
    in the child where the program would have raised them."""
    try:
        return compile(src, name, mode, dont_inherit=True, optimize=0)
    except Exception as e:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError
        return e


def _compile_job(job):
    job["_builtins"] = dict(_PRISTINE_BUILTINS)
    job["_program"] = _compile(job["program"], "<program>", "exec")
    job["_setup"] = _compile(job["setup"], "<test setup>", "exec") if job.get("setup") else None
    for test in job["tests"]:
        name = "<test %d>" % test["k"]
        if test["mode"] == "eval":
            test["_pre"] = _compile(test["pre"], name, "exec") if test.get("pre") else None
            test["_exprs"] = [_compile(src, name, "eval") for src in test["exprs"]]
        else:
            test["_src"] = _compile(test["src"], name, "exec")


def _code(c):
    if isinstance(c, BaseException):
        raise c
    return c


def _flush_stdio():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


# ----------------------------------------------------------------------------- harness side
class _Host:
    """Frames to the host are queued and written in one go when a job ends (one wake-up per job)."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self.queue = []

    def send(self, payload):
        self.queue.append(_HDR.pack(len(payload)) + payload)

    def flush(self):
        data = memoryview(b"".join(self.queue))
        self.queue.clear()
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]

    def recv(self):
        head = self._read_exact(4)
        if head is None:
            return None
        return self._read_exact(_HDR.unpack(head)[0])

    def _read_exact(self, n):
        chunks, got = [], 0
        while got < n:
            b = os.read(self.rfd, min(n - got, 1 << 20))
            if not b:
                return None
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)


def _cpu_seconds(pid):
    """CPU time of a live child (all its threads, plus children it has reaped)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / _CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def _kill_all_others(child_pgid):
    """Kill everything the program left behind. As pid 1, kill(-1) reaches every other process in
    the namespace; outside a pid namespace (the unsafe debug mode) only the program's group."""
    try:
        if os.getpid() == 1:
            os.kill(-1, signal.SIGKILL)
        else:
            os.killpg(child_pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    while True:  # reap: orphans re-parent to pid 1
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG if os.getpid() != 1 else 0)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _wipe(path):
    """Empty the scratch directory, whatever permissions the program left on it."""
    stack = [path]
    dirs = []
    while stack:
        d = stack.pop()
        if d != path:
            try:
                os.chmod(d, 0o700)
            except OSError:
                pass
        try:
            names = os.listdir(d)
        except OSError:
            continue
        dirs.append(d)
        for name in names:
            p = os.path.join(d, name)
            try:
                if os.path.isdir(p) and not os.path.islink(p):
                    stack.append(p)
                else:
                    os.unlink(p)
            except OSError:
                pass
    for d in reversed(dirs[1:]):
        try:
            os.rmdir(d)
        except OSError:
            pass


class _Frames:
    """Incremental parser for the child's result pipe; refuses frames over the size cap."""

    def __init__(self, cap):
        self.buf = bytearray()
        self.cap = cap
        self.overflow = False

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            n = _HDR.unpack_from(self.buf)[0]
            if n > self.cap:
                self.overflow = True
                return out
            if len(self.buf) < 4 + n:
                break
            out.append(bytes(self.buf[4:4 + n]))
            del self.buf[:4 + n]
        return out


def _run_job(job, host, devnull):
    tests = job["tests"]
    lim = job["limits"]
    deadline = time.monotonic() + float(lim["program_wall_s"])
    output = bytearray()
    stats = {"forks": 0, "cpu_s": 0.0}
    _compile_job(job)
    start = 0
    while start < len(tests):
        start = _Supervisor(job, start, host, devnull, deadline, output, stats).run()
    if job.get("scratch"):
        _wipe(job["scratch"])
    host.send(b"O" + bytes(output))
    host.send(b"Z" + json.dumps(stats).encode())
    host.flush()


class _Supervisor:
    """One child running tests[start:], watched from outside: returns where to resume.

    The child's result pipe is read when the child exits, when output arrives, and every TICK
    seconds otherwise, so a fast program costs this process one wake-up. A test's clock starts when
    its predecessor's end is seen (at most TICK late: in the program's favour). CPU time is read only
    when a test has run for as long as its CPU budget: the CPU the test used is bounded below by
    (CPU now) - (CPU at the last reading + wall time from that reading to the test's start).
    """

    TICK = 0.05

    def __init__(self, job, start, host, devnull, deadline, output, stats):
        self.job, self.tests, self.host = job, job["tests"], host
        lim = job["limits"]
        self.default_cpu_s, self.default_wall_s = float(lim["test_cpu_s"]), float(lim["test_wall_s"])
        self.stop = bool(job.get("stop_at_first_failure"))
        self.stopped = self.cur_raised = False
        self.deadline, self.output, self.stats = deadline, output, stats
        self.out_cap = int(job["output_cap"])
        self.frames = _Frames(int(job["value_cap"]) + 64 + _TOKEN_BYTES)
        # The program can write to the result pipe too (it runs in the child): frames must carry this
        # fork's token, and must be the ones the test being timed can send, or the program fails.
        self.token = os.urandom(_TOKEN_BYTES)
        self.tampered = False
        self.loaded = self.program_failed = False
        self.cur = start
        res_r, res_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            fcntl.fcntl(res_w, 1031, 1 << 20)  # F_SETPIPE_SZ: room for results between reads
        except OSError:
            pass
        pid = os.fork()
        if pid == 0:
            os.close(res_r)
            os.close(out_r)
            # the child's copy of this object forgets the token: it lives on only where send() needs it
            _child(job, start, res_w, out_w, devnull, self.__dict__.pop("token"))
        os.close(res_w)
        os.close(out_w)
        os.set_blocking(res_r, False)
        os.set_blocking(out_r, False)
        stats["forks"] += 1
        self.pid, self.res_r, self.out_r = pid, res_r, out_r
        self.pidfd = os.pidfd_open(pid)
        self.cpu_ref, self.t_ref = 0.0, time.monotonic()
        self._new_phase()

    def _new_phase(self):
        # a test may carry its own budgets ("cpu_s", "wall_s"); loading the program uses the job's
        test = self.tests[self.cur] if self.loaded and self.cur < len(self.tests) else {}
        self.cpu_s = float(test.get("cpu_s", self.default_cpu_s))
        self.wall_s = float(test.get("wall_s", self.default_wall_s))
        self.phase_start = time.monotonic()
        self.cpu_at_phase = self.cpu_ref + (self.phase_start - self.t_ref)
        self.cpu_check = self.phase_start + self.cpu_s

    def _on_frame(self, frame):
        if self.tampered:
            return
        if frame[:_TOKEN_BYTES] != self.token:
            self.tampered = True
            return
        frame = frame[_TOKEN_BYTES:]
        kind = frame[:1]
        if kind == b"L" and not self.loaded and not self.program_failed:
            self.loaded = True
            self.host.send(frame)
            self._new_phase()
        elif kind == b"P" and not self.loaded and not self.program_failed:
            self.program_failed = True
            self.host.send(frame)
        elif (kind in (b"V", b"E", b"D") and self.loaded and not self.stopped and self.cur < len(self.tests)
              and len(frame) >= 5 and _K.unpack_from(frame, 1)[0] == self.tests[self.cur]["k"]):
            self.host.send(frame)
            if kind == b"E":
                self.cur_raised = True
            elif kind == b"D":
                self.stopped = self.stop and self.cur_raised  # the child sends nothing after this
                self.cur_raised = False
                self.cur += 1
                self._new_phase()
        else:  # out of order, a test already ended, unknown type: the harness never sends these
            self.tampered = True

    def _drain(self, fd):
        """Read what is available; False at end of file."""
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            if not data:
                return False
            if fd == self.out_r:
                room = self.out_cap - len(self.output)
                if room > 0:
                    self.output += data[:room]
            else:
                for frame in self.frames.feed(data):
                    self._on_frame(frame)
                if self.frames.overflow:
                    return False

    def _watch(self):
        """Wait for the child to finish, die or run out of time; return (kind, info) or None."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        poller.register(self.out_r, select.POLLIN)
        res_open = True
        while True:
            now = time.monotonic()
            check_at = min(self.phase_start + self.wall_s, self.cpu_check, self.deadline)
            wait = max(0.0, min(self.TICK, check_at - now))
            exited = False
            for fd, _ in poller.poll(wait * 1000 + 0.5):
                if fd == self.pidfd:
                    exited = True
                elif not self._drain(fd):
                    poller.unregister(fd)
            if res_open:
                res_open = self._drain(self.res_r)
            if self.tampered:
                return "X", {"reason": "tampering"}
            if self.frames.overflow:
                return "C", {"reason": "protocol", "detail": "result frame over the size cap"}
            if exited:
                self._drain(self.res_r)
                self._drain(self.out_r)
                wstatus = self._reap()
                if self.tampered:
                    return "X", {"reason": "tampering"}
                if self.program_failed or self.stopped or self.cur >= len(self.tests):
                    return None
                return "C", {"reason": "died", "exit": os.waitstatus_to_exitcode(wstatus)}
            now = time.monotonic()
            if now >= self.deadline:
                return "T", {"reason": "program_deadline"}
            if now - self.phase_start >= self.wall_s:
                return "T", {"reason": "wall"}
            if now >= self.cpu_check:
                cpu = _cpu_seconds(self.pid)
                used = cpu - self.cpu_at_phase
                self.cpu_ref, self.t_ref = cpu, now
                if used >= self.cpu_s:
                    return "T", {"reason": "cpu"}
                # not yet: look again once the rest of the budget could have been spent
                self.cpu_check = now + (self.cpu_s - used)

    def _reap(self):
        _, wstatus, usage = os.wait4(self.pid, 0)
        self.reaped = True
        self.stats["cpu_s"] += usage.ru_utime + usage.ru_stime
        return wstatus

    def run(self):
        self.reaped = False
        verdict = self._watch()
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
        _kill_all_others(self.pid)
        for fd in (self.res_r, self.out_r, self.pidfd):
            os.close(fd)
        n = len(self.tests)
        if verdict is None or self.program_failed:
            return n
        kind, info = verdict
        if kind == "X":  # nothing this program reports can be trusted: stop here
            self.host.send(b"X" + json.dumps(info).encode())
            return n
        if not self.loaded:  # the program itself hung or died: no test can run
            self.host.send(kind.encode() + _K.pack(-1) + json.dumps(info).encode())
            return n
        if self.cur >= n:
            return n
        self.host.send(kind.encode() + _K.pack(self.tests[self.cur]["k"]) + json.dumps(info).encode())
        return n if info.get("reason") == "program_deadline" or self.stop else self.cur + 1


def _drop_privileges(uid, gid):
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def main(argv):
    uid = gid = None
    scratch = None
    it = iter(argv)
    for a in it:
        if a == "--uid":
            uid = int(next(it))
        elif a == "--gid":
            gid = int(next(it))
        elif a == "--scratch":
            scratch = next(it)
    if uid is not None and os.getuid() == 0:
        _drop_privileges(uid, gid if gid is not None else uid)
    # No parent-death signal: as pid 1 of its namespace this process would drop it, and a handler
    # would let programs kill it with the same signal. When the host goes away its pipes close,
    # and the next read or write here ends this process (and with it the namespace).
    # A program must not read or write this process's memory through /proc/1/mem.
    _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    # Host pipes move off 0/1 so that children inherit only /dev/null and their own pipes.
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    host = _Host(rfd, wfd)
    gc.freeze()  # objects made so far are never scanned by a child's collector (no copy-on-write)
    host.send(b"R" + json.dumps({"python": sys.version.split()[0], "pid": os.getpid(),
                                  "uid": os.getuid()}).encode())
    host.flush()
    while True:
        req = host.recv()
        if req is None:
            return 0
        job = json.loads(req)
        if scratch:
            job["scratch"] = scratch
        _run_job(job, host, devnull)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
