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
hangs at test k, test k is reported and a fresh child resumes at k + 1 (with the job's
"stop_at_first_failure", nothing resumes: the host skips the rest). A test may carry its own CPU and
wall budgets ("cpu_s", "wall_s"); the job's "limits" time the rest. With the job's "early_stop", a test
may carry "expect", the encoding of a value that passes it: after a test whose value is anything else,
the job ends (the host decides whether it failed). After every child: kill every
other process in the namespace, reap them, and wipe the scratch directory (a scratch that cannot be
emptied is reported to the host, which restarts this worker).

Frames (both directions): 4-byte big-endian length, then the payload. The first payload byte is
the frame type. Child -> harness -> host:
  L                      the program ran to completion
  P <json exc>           the program raised (or called sys.exit)
  V <u32 k><u16 j><val>  test k, expression j evaluated to <val> (strict JSON encoding below)
  E <u32 k><u16 j><exc>  test k, expression j raised (j = 0xFFFF: its imports, or the exec body)
  K <u32 k><u16 n><val>  test k, the n-th assertion run inside a function or statement: [check id, values]
  D <u32 k>              the child finished test k
Child frames carry, before the type byte, a 16-byte token drawn afresh for every fork. The harness
checks each one's length and type before relaying it.
Harness -> host only:
  R <json>               ready, once at start-up
  X <json>               the program tampered with the result channel: every test fails
  T <i32 k><json>        test k timed out (k = -1: the program itself, before any test)
  C <i32 k><json>        the child died during test k (k = -1: while running the program)
  O <bytes>              the program's first stdout/stderr bytes (capped)
  Z <json>               the job is over (CPU time, forks, scratch entries left after a wipe)
Every frame to the host carries, before the type byte, the job's sequence number (u32), so that
no frame of one job can ever be read as another's.

Expressions that need only the test's setup and imports ("clean" holes: expected values such as
``math.sqrt(25)``) are evaluated in a separate child that runs the setup but never the program.
"""
import builtins
import collections
import ctypes
import errno
import fcntl
import gc
import json
import marshal
import os
import resource
import select
import signal
import stat
import struct
import sys
import time
import warnings

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
_SEQ = struct.Struct(">I")
_NO_EXPR = 0xFFFF  # E frames of a test's imports or of an exec-mode body
_CLK = os.sysconf("SC_CLK_TCK")

# Every function the harness calls is captured here, at import, before any program exists: a program
# that rebinds builtins.eval, os.write or json.dumps changes nothing the harness does.
_type, _len, _hex, _isinstance, _bool, _str = type, len, hex, isinstance, bool, str
_eval, _exec, _hasattr, _getattr = builtins.eval, builtins.exec, hasattr, getattr
_set, _map, _range, _sum, _chain = set, map, range, sum, itertools.chain.from_iterable
try:  # the stdlib's own SHA-256 (not hashlib's OpenSSL: loading it made every fork ~2% dearer in CPU)
    from _sha256 import sha256 as _sha256
except ImportError:  # Python 3.12+
    from _sha2 import sha256 as _sha256
_marshal_dumps = marshal.dumps
_write, _read, _exit, _fork, _urandom = os.write, os.read, os._exit, os.fork, os.urandom
_EXACT_LIST, _EXACT_TUPLE, _EXACT_DICT = list, tuple, dict
_ORDERED, _DEFAULTDICT, _COUNTER, _DEQUE = (collections.OrderedDict, collections.defaultdict,
                                           collections.Counter, collections.deque)
_VIEWS = {}  # exact dict view types -> tag (OrderedDict's views are types of their own)
for _d in ({}, collections.OrderedDict()):
    _VIEWS.update({_type(_d.keys()): "dk", _type(_d.values()): "dv", _type(_d.items()): "di"})
_SIZED = frozenset((str, bytes, bytearray, list, tuple, dict, set, frozenset, range, _ORDERED, _DEFAULTDICT,
                    _COUNTER, _DEQUE, *_VIEWS))
# The C encoder of the json module: no Python-level function of json takes part in an encoding.
_JSON = json.encoder.c_make_encoder(None, None, json.encoder.encode_basestring_ascii, None, ":", ",",
                                    False, False, False)
_MODULES = sys.modules
_CHECK_SENTINEL = "\x00sandbox-check"  # the host writes this constant where a test calls the checker
_TRY_SENTINEL = "\x00sandbox-try"


class _TooLarge(Exception):  # reported with the reason ValueTooLarge
    pass


ValueTooLarge = _TooLarge


class UnencodableValue(Exception):
    pass


def encode_value(value, cap):
    """Strict JSON encoding of a test value: exact builtin types (and a few stdlib containers) only.

    Anything else, an object with a custom __eq__ among them, is refused, so no object made by the
    program ever reaches the comparison: the host rebuilds plain values from this text and compares.
    """
    budget = [cap]

    def enc(v, depth):
        if depth > 100:
            raise UnencodableValue("value nested deeper than 100 levels")
        budget[0] -= 8
        if budget[0] < 0:
            raise ValueTooLarge()
        t = _type(v)
        if v is None or t is bool:
            return v
        if t is int:
            if -(1 << 53) < v < (1 << 53):
                return v
            s = _hex(v)
            budget[0] -= _len(s)
            return {"i": s}
        if t is float:  # a finite float as JSON's number (repr: exact, and never read back as an int)
            return v if v - v == 0.0 else {"f": float.hex(v)}
        if t is str:
            budget[0] -= _len(v)
            if budget[0] < 0:
                raise ValueTooLarge()
            return v
        if t is complex:
            return {"c": [float.hex(v.real), float.hex(v.imag)]}
        if t is bytes or t is bytearray:
            budget[0] -= 2 * _len(v)
            if budget[0] < 0:
                raise ValueTooLarge()
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
        if t is _Raised:
            name, msg = v.info
            if _type(name) is not str or _type(msg) is not str:
                raise UnencodableValue("malformed exception value")
            budget[0] -= _len(name) + _len(msg)
            return {"x": {"type": name[:100], "msg": msg[:300]}}
        tag = _VIEWS.get(t)
        if tag == "di":
            return {tag: [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v]}
        if tag is not None:
            return {tag: [enc(x, depth + 1) for x in v]}
        # decimal and fractions are not pre-imported (they would slow every fork): if the program
        # made such a value, the module is loaded. Whatever text is sent, the host builds its own
        # value from it and checks it (a fake module here can only choose the text).
        dm, fm = _MODULES.get("decimal"), _MODULES.get("fractions")
        if dm is not None and t is _getattr(dm, "Decimal", None):
            return {"dec": _str(v)[:10000]}
        if fm is not None and t is _getattr(fm, "Fraction", None):
            return {"fr": [_hex(v.numerator), _hex(v.denominator)]}
        if _hasattr(t, "__next__") and _hasattr(t, "__iter__"):
            # generators, map(), zip(), ...: the items go out; the host keeps iterator semantics
            items = []
            for x in v:
                items.append(enc(x, depth + 1))
                if budget[0] < 0:
                    raise ValueTooLarge()
            return {"it": items}
        # A namedtuple that keeps tuple's own equality compares like the plain tuple.
        if _isinstance(v, _EXACT_TUPLE) and _hasattr(t, "_fields") and t.__eq__ is tuple.__eq__:
            return {"t": [enc(x, depth + 1) for x in _EXACT_TUPLE.__iter__(v)]}
        raise UnencodableValue("values of type %s cannot be compared outside the sandbox"
                               % _getattr(t, "__qualname__", "?")[:80])

    try:
        text = "".join(_JSON(enc(value, 0), 0))
    except RecursionError:
        raise UnencodableValue("value nested too deeply") from None
    if _len(text) > cap:
        raise ValueTooLarge()
    return text.encode("ascii")


# Types a value over the cap may be made of to be sent as a digest: those whose marshal encoding
# decides ``==`` (floats and complex numbers only when none is a NaN, which is not equal to itself).
_DIGEST_LEAVES = frozenset((int, float, complex, str, bytes, bool, type(None)))
_INEXACT = frozenset((float, complex))
_DIGEST_TYPES = _DIGEST_LEAVES | {list, tuple, set, frozenset, dict}
_DIGEST_CHUNK = 4096
# Shared sub-lists count every time they are reached, so a small DAG cannot make the walk explode.
_DIGEST_MAX_ITEMS, _DIGEST_MAX_CONTAINERS = 1 << 28, 1 << 22


def _digestible(v):
    """Whether ``v`` is made of exact _DIGEST_TYPES only. Checked before marshal sees the value: marshal
    also writes any buffer-protocol object (array.array, ...) as bytes, which ``==`` tells apart. Level
    by level, so the type of every item is read in C (MBPP+ 255: 128 million strings in 2-3 s)."""
    level, seen = [v], 0
    for _depth in _range(101):
        if _len(level) > _DIGEST_MAX_CONTAINERS:
            return False
        items = []
        for c in level:
            t = _type(c)
            if t in _DIGEST_LEAVES:  # only the value itself can be one (an int, str or bytes over the cap)
                continue
            if t not in _DIGEST_TYPES:
                return False
            if t is _EXACT_DICT:
                items.append(_EXACT_LIST(_EXACT_DICT.keys(c)))
                items.append(_EXACT_LIST(_EXACT_DICT.values(c)))
            else:
                items.append(c)
        if not items:
            return True
        seen += _sum(_map(_len, items))
        if seen > _DIGEST_MAX_ITEMS:
            return False
        kinds = _set(_map(_type, _chain(items)))
        if not kinds <= _DIGEST_TYPES:
            return False
        if kinds & _INEXACT:
            for x in _chain(items):
                if _type(x) in _INEXACT and x != x:
                    return False
        if kinds <= _DIGEST_LEAVES:
            return True
        level = [x for x in _chain(items) if _type(x) not in _DIGEST_LEAVES]
    return False  # nested deeper than 100


def encode_or_digest(value, cap):
    """``encode_value``, or, for a value over the cap made of exact ints, floats and complex numbers (no
    NaN), strings, bytes, booleans, None, lists, tuples, sets and dicts, ``{"h": sha256 of its marshal
    encoding}``: the host passes an equality between two such digests when they are the same (equal
    bytes decode to equal values) and treats any other use of them as ValueTooLarge. So a correct answer
    larger than the cap (MBPP+ 255: 1.66 million 77-tuples) can still match an expected value as large,
    without 1 GB crossing the pipe. Anything else over the cap raises ValueTooLarge."""
    try:
        return encode_value(value, cap)
    except ValueTooLarge:
        pass
    if not _digestible(value):
        raise ValueTooLarge()
    h, t = _sha256(), _type(value)
    try:
        if t is _EXACT_LIST or t is _EXACT_TUPLE:  # in slices: never the whole encoding in memory at once
            h.update(b"L" if t is _EXACT_LIST else b"T")
            for i in _range(0, _len(value), _DIGEST_CHUNK):
                h.update(_marshal_dumps(value[i:i + _DIGEST_CHUNK], 2))  # each slice is self-delimiting
        else:
            h.update(b"M" + _marshal_dumps(value, 2))  # format 2: no back-references, no interning flags
    except ValueError:  # nested deeper than marshal goes
        raise ValueTooLarge() from None
    return b'{"h":"' + h.hexdigest().encode("ascii") + b'"}'


def _size(value):
    """len() of an exact builtin container, for a test that only looks at the length (so a result
    over the value cap can still be measured); anything else is refused like an unencodable value."""
    t = _type(value)
    if t not in _SIZED:
        if _hasattr(t, "__next__"):
            raise TypeError("object of type '%s' has no len()" % _getattr(t, "__name__", "?")[:80])
        raise UnencodableValue("the length of a %s cannot be trusted outside the sandbox"
                               % _getattr(t, "__qualname__", "?")[:80])
    return t.__len__(value)


def _exc_info(e):
    """Type name and a short message as JSON, safely: str() of a hostile exception may itself raise."""
    name, msg = _exc_pair(e)
    return "".join(_JSON({"type": name, "msg": msg}, 0)).encode("ascii")


def _exc_pair(e):
    try:
        msg = _str(e)
        msg = msg[:300] if _type(msg) is str else "<unprintable>"
    except BaseException:
        msg = "<unprintable>"
    try:
        name = _type(e).__name__
        name = name[:100] if _type(name) is str else "?"
    except BaseException:
        name = "?"
    return name, msg


# ----------------------------------------------------------------------------- child side
_TOKEN_BYTES = 16


def _child(job, start, res_w, out_w, devnull, token, clean):
    """Runs in the forked child: never returns. A clean child runs the setup but not the program,
    and evaluates only the clean holes of its tests."""
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
            _write(oom, b"1000")
            os.close(oom)
        except OSError:
            pass
        lim = job["limits"]
        R = resource
        # No RLIMIT_CPU: a finite one makes the kernel keep the process's CPU clock from timer ticks,
        # so time.process_time() in the program would move in steps of a tick (4 ms here); pid 1 enforces
        # every CPU budget (the slot cgroup or the namespace scan), the host a wall deadline.
        for name, value in (("RLIMIT_AS", lim.get("memory_bytes")), ("RLIMIT_FSIZE", lim.get("fsize_bytes")),
                            ("RLIMIT_NOFILE", lim.get("nofile")), ("RLIMIT_NPROC", lim.get("nproc")),
                            ("RLIMIT_CORE", 0)):
            if value is not None:
                R.setrlimit(getattr(R, name), (int(value), int(value)))
        if job.get("scratch"):
            os.chdir(job["scratch"])
        _MODULES["__main__"] = _type(sys)("__main__")  # this module is not the program's to find by name
    except BaseException as e:  # set-up failure is a harness problem: report it as a crash
        _write(2, ("sandbox child set-up failed: %r\n" % (e,)).encode())
        _exit(70)

    pending = []
    write, join, encode, info, evaluate, execute = _write, b"".join, encode_or_digest, _exc_info, _eval, _exec
    hdr, kj = _HDR.pack, _KJ.pack

    def send(payload, now=False):
        """Queue a frame; D (a test's end) flushes the test's frames in one write."""
        pending.append(hdr(_len(payload) + _TOKEN_BYTES) + token + payload)
        if now or payload[:1] in (b"D", b"L", b"P"):
            data = join(pending)
            pending.clear()
            while data:
                data = data[write(fd, data):]

    cap = int(job["value_cap"])
    current = [0, 0, False]  # the test being run, how many of its inside checks reported, in a test

    def check(cid, truth, size, found, *thunks):
        """An assertion the host rewrote (inside a function, or in a multi-statement test): its
        holes' values go out now, strictly encoded; the host decides. It never raises, so the
        expected values need not be here, and the frame is written before the program runs again."""
        if not current[2]:  # the setup called its own function: no test to report to, no host to decide
            raise RuntimeError("an assert in a setup function ran outside a test; call it from a test")
        parts, left = [], cap
        for j, thunk in enumerate(thunks):
            try:
                value = thunk()
                if j in found:
                    value = value if _type(value) is bool else value is not None
                payload = encode(_bool(value) if j in truth else _size(value) if j in size else value, left)
                left -= _len(payload)
            except ValueTooLarge:
                payload = b'{"x":{"type":"ValueTooLarge","msg":""}}'
            except BaseException as e:
                payload = b'{"x":' + info(e) + b"}"
            parts.append(payload)
        n = current[1]
        current[1] += 1
        send(b"K" + kj(current[0], n & 0xFFFF) + b'["' + cid.encode("ascii") + b'",[' + b",".join(parts) + b"]]",
             now=True)

    job["_checker"][0] = check
    g = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        if not clean:
            execute(_code(job["_program"]), g)
        if job["_setup"] is not None:
            execute(_code(job["_setup"]), g)
    except BaseException as e:
        _flush_stdio()
        send(b"P" + info(e))
        _exit(0)
    send(b"L")
    # Tests see the builtins as they were before the program ran (a program's own functions keep
    # whatever builtins they were defined with). The dict was made by the parent for this job:
    # copying it here would cost every child ~0.2 ms of copy-on-write faults.
    g["__builtins__"] = job["_builtins"]
    current[2] = True
    sys.settrace(None)
    sys.setprofile(None)
    skip_clean = not clean and not job.get("_clean_failed")
    for test in (job["_clean_tests"] if clean else job["tests"])[start:]:
        k = test["k"]
        current[0], current[1] = k, 0
        if test["mode"] == "eval":
            if test["_pre"] is not None:
                try:
                    execute(_code(test["_pre"]), g)
                except BaseException as e:
                    send(b"E" + kj(k, _NO_EXPR) + info(e))
                    send(b"D" + kj(k, 0)[:4])
                    continue
            truth, size, found, held = test["_truth"], test["_size"], test["_found"], test["_clean"]
            known = test["_known"]
            for j, code in enumerate(test["_exprs"]):
                if j in known:
                    continue  # the host has this expected value from an earlier job
                if (j in held) != clean and (clean or skip_clean):
                    continue  # the other child evaluates this one
                try:  # every hole is evaluated, even after one raised: the host short-circuits
                    value = evaluate(_code(code), g)
                    if j in truth:
                        value = _bool(value)
                    elif j in size:
                        value = _size(value)
                    elif j in found:  # EvalPlus' regex oracle: no object of the program is judged
                        value = value if _type(value) is bool else value is not None
                    payload = encode(value, cap)
                except ValueTooLarge:
                    send(b"E" + kj(k, j) + b'{"type":"ValueTooLarge","msg":"value over %d bytes"}' % cap)
                    continue
                except BaseException as e:
                    send(b"E" + kj(k, j) + info(e))
                    continue
                send(b"V" + kj(k, j) + payload)
        else:
            try:
                execute(_code(test["_src"]), g)
            except BaseException as e:
                send(b"E" + kj(k, _NO_EXPR) + info(e), now=True)
        send(b"D" + kj(k, 0)[:4])
    _flush_stdio()
    _exit(0)  # also ends any non-daemon thread the program started


class _CodeCache:
    """Code compiled in earlier jobs, least recently used first. Best-of-n and RL batches run the same
    tests for many programs, and stop-at-first-failure runs one program once per chunk: compiling was
    half of this process's CPU on HumanEval+. Only this process (never a child) reads or writes it.
    Bounded (code objects take ~8x their source in memory), because every child's RLIMIT_AS counts
    this process's heap, which the child inherits."""

    LIMIT = 16 << 20

    def __init__(self):
        self.codes = collections.OrderedDict()
        self.size = 0

    @staticmethod
    def cost(src):
        return 8 * _len(src) + 512

    def get(self, key):
        code = self.codes.get(key)
        if code is not None:
            self.codes.move_to_end(key)
        return code

    def put(self, key, code):
        cost = self.cost(key[0])
        if cost > self.LIMIT // 4:
            return
        self.codes[key] = code
        self.size += cost
        while self.size > self.LIMIT:
            old, _ = self.codes.popitem(last=False)
            self.size -= self.cost(old[0])


_CODES = _CodeCache()


def _compile(src, name, mode, consts=None):
    """Compiled here, in the warm parent, so that no child pays for the compiler: a first compile
    in a fresh fork costs ~1.7 ms of copy-on-write faults. Errors travel as the exception, raised
    in the child where the program would have raised them. ``consts`` maps sentinel strings the host
    wrote into test code to the harness's own functions (this job's), so no name lookup can reach
    them; code is cached before they are bound."""
    key = (src, name, mode)
    code = _CODES.get(key)
    if code is None:
        try:
            code = compile(src, name, mode, dont_inherit=True, optimize=0)
        except Exception as e:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError
            code = e
        _CODES.put(key, code)
    if _isinstance(code, BaseException):
        return code
    if consts and ("sandbox-check" in src or "sandbox-try" in src):  # however the host spelled the sentinel
        return _bind_consts(code, consts)
    return code


def _bind_consts(code, consts):
    co = tuple(_bind_consts(c, consts) if _type(c) is _type(code) else
               consts.get(c, c) if _type(c) is str else c for c in code.co_consts)
    return code.replace(co_consts=co)


def _compile_job(job):
    builtins_ = dict(_PRISTINE_BUILTINS)
    job["_builtins"] = builtins_
    checker = job["_checker"] = [None]

    def check(*args):  # bound to the child's checker once the child runs (a constant in test code)
        return checker[0](*args)

    def attempt(thunk, truth=0):
        """A hole inside an all()/any() the host rewrote: its value, or the exception it raised."""
        try:
            return _bool(thunk()) if truth else thunk()
        except BaseException as e:
            return _Raised(_exc_pair(e))

    consts = {_CHECK_SENTINEL: check, _TRY_SENTINEL: attempt}
    job["_program"] = _compile(job["program"], "<program>", "exec")
    job["_setup"] = _compile(job["setup"], "<test setup>", "exec", consts) if job.get("setup") else None
    job["_clean_tests"] = []
    for test in job["tests"]:
        name = "<test %d>" % test["k"]
        if test["mode"] == "eval":
            test["_pre"] = _compile(test["pre"], name, "exec") if test.get("pre") else None
            test["_exprs"] = [_compile(src, name, "eval", consts) for src in test["exprs"]]
            for key in ("truth", "size", "found", "clean", "known"):
                test["_" + key] = frozenset(test[key]) if test.get(key) else _NONE
            expect = test.get("expect")  # the encoding that passes for sure (see _Supervisor)
            test["_expect"] = expect.encode("ascii") if _type(expect) is str and expect.isascii() else None
            if test["_clean"]:
                job["_clean_tests"].append(test)
        else:
            test["_src"] = _compile(test["src"], name, "exec", consts)


_NONE = frozenset()


class _Raised:
    """The exception a hole raised, as a value: sent as such, raised on the host only if needed."""

    __slots__ = ("info",)

    def __init__(self, info):
        self.info = info


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
        self.seq = b"\0\0\0\0"

    def send(self, payload):
        self.queue.append(_HDR.pack(len(payload) + 4) + self.seq + payload)

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


def _stat_cpu(pid):
    """CPU seconds of one process from /proc/<pid>/stat: all its threads, plus the children it reaped."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / _CLK


def _rusage_s(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


class _CpuClock:
    """The CPU seconds spent by everything a program started, forked children it never reaps included.

    * With the slot's cgroup (the host passes an open fd to its cpuacct.usage or cpu.stat): the
      cgroup's usage minus this process's own.
    * Without, as pid 1: while no pid was allocated in the namespace after the child's (the last
      field of /proc/loadavg), the child's own clock; otherwise the sum over every process of the
      namespace but this one, zombies included. Both add the children this process has reaped.
    * Outside a pid namespace (the unsafe debug mode): the child's own clock only.
    ``read`` returns None when the clock cannot be read: the caller treats that as an exhausted budget.
    """

    def __init__(self, cg_fd):
        self.cg_fd = cg_fd
        self.ns = os.getpid() == 1
        self.loadavg = None
        if cg_fd is None and self.ns:
            try:
                self.loadavg = os.open("/proc/loadavg", os.O_RDONLY)
            except OSError:
                pass
        self.ncpu = max(1, _len(os.sched_getaffinity(0)))
        self.pid = 0

    def start(self, pid):
        """The reading right after the fork of ``pid`` (its own clock is still 0)."""
        self.pid = pid
        if self.cg_fd is not None:
            return self.read()
        return _rusage_s(resource.RUSAGE_CHILDREN)

    def others(self):
        """Whether processes or threads other than the child may have run since it was forked."""
        if self.cg_fd is not None:
            return True
        if not self.ns:
            return False
        try:
            return int(os.pread(self.loadavg, 128, 0).split()[-1]) != self.pid
        except (OSError, TypeError, ValueError, IndexError):
            return True

    def read(self):
        try:
            if self.cg_fd is not None:
                text = os.pread(self.cg_fd, 512, 0)
                if text.startswith(b"usage_usec"):  # v2 cpu.stat
                    used = int(text.split(None, 2)[1]) / 1e6
                else:  # v1 cpuacct.usage, in nanoseconds
                    used = int(text) / 1e9
                return used - _rusage_s(resource.RUSAGE_SELF)
            total = _rusage_s(resource.RUSAGE_CHILDREN)
            if not self.others():
                return total + _stat_cpu(self.pid)
            for name in os.listdir("/proc"):
                if name.isdigit() and name != "1":
                    try:
                        total += _stat_cpu(int(name))
                    except (OSError, IndexError, ValueError):  # gone meanwhile: reaped, so counted where it went
                        pass
            return total
        except (OSError, IndexError, ValueError):
            return None


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


_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_wipe_names = iter(range(1 << 62))


def _wipe(path):
    """Empty the scratch directory, whatever permissions and depth the program left; return how many
    entries are left (0: empty). Runs when no process of the program is left, so nothing changes
    under it. Every call is relative to a directory fd (no path grows with the depth, so PATH_MAX
    is never reached), and a directory below the top level is moved up to the top before its parent
    is removed: at most two directories are open at once, however deep the tree."""
    try:
        if not os.listdir(path):  # the common case, at the cost of the old absolute-path wipe
            return 0
    except OSError:
        pass
    try:
        mode = os.stat(path).st_mode
        if mode & 0o700 != 0o700:  # the program owns the scratch (user-namespace mode) and closed it
            os.chmod(path, mode | 0o700)
        top = os.open(path, _O_DIR)
    except OSError:
        return 1
    try:
        while True:
            names = os.listdir(top)
            if not names or not [n for n in names if _wipe_entry(top, n)]:
                return _len(names)
    except OSError:
        return 1
    finally:
        os.close(top)


def _wipe_entry(top, name):
    """Remove top/name, moving its subdirectories up to top; False if it cannot be removed."""
    try:
        if not stat.S_ISDIR(os.stat(name, dir_fd=top, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=top)
            return True
        os.chmod(name, 0o700, dir_fd=top)  # a directory (checked above), so nothing is followed
        d = os.open(name, _O_DIR, dir_fd=top)
        try:
            for sub in os.listdir(d):
                if not stat.S_ISDIR(os.stat(sub, dir_fd=d, follow_symlinks=False).st_mode):
                    os.unlink(sub, dir_fd=d)
                    continue
                os.chmod(sub, 0o700, dir_fd=d)  # moving a directory rewrites its "..": it must be writable
                for _ in range(100):  # the program may have planted names in the way
                    try:
                        os.rename(sub, ".wipe%d" % next(_wipe_names), src_dir_fd=d, dst_dir_fd=top)
                        break
                    except OSError as e:
                        if e.errno not in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY):
                            raise
        finally:
            os.close(d)
        os.rmdir(name, dir_fd=top)
        return True
    except OSError:
        return False


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


def _run_job(job, host, devnull, clock):
    tests = job["tests"]
    lim = job["limits"]
    deadline = time.monotonic() + float(lim["program_wall_s"])
    output = bytearray()
    stats = {"forks": 0, "cpu_s": 0.0, "expected_cpu_s": 0.0}
    _compile_job(job)
    clean = job["_clean_tests"]
    start = 0
    while start < len(clean):  # expected values first, in children that never run the program
        sup = _Supervisor(job, start, host, devnull, deadline, output, stats, clock, clean=True)
        start = sup.run()
        if sup.program_failed or not sup.loaded:  # the setup alone fails: the program's child does it all
            job["_clean_failed"] = stats["clean_failed"] = True  # so no value of this job is clean
            break
    start = 0
    while start < len(tests):
        start = _Supervisor(job, start, host, devnull, deadline, output, stats, clock).run()
    host.send(b"O" + bytes(output))
    host.send(b"Z" + json.dumps(stats).encode())
    host.flush()


_CLOCK_UNREADABLE = {"reason": "cpu", "detail": "the CPU clock could not be read"}


class _Supervisor:
    """One child running tests[start:], watched from outside: returns where to resume.

    The child's result pipe is read when the child exits, when output arrives, and every TICK
    seconds otherwise, so a fast program costs this process one wake-up. A test's clock starts when
    its predecessor's end is seen (at most TICK late: in the program's favour). The CPU clock
    (_CpuClock: the whole program, unreaped children included) is read at the end of every test and
    of the program's load whenever processes or threads other than the child may exist, so CPU
    spent by children left running is charged to the test in which it was spent; and during a test,
    whenever the budget could have been spent on all CPUs. Where no other process exists (no cgroup,
    and no pid allocated since the fork) the end-of-test reading is skipped: the CPU the test used
    is then bounded below by (CPU now) - (CPU at the last reading + wall time from that reading to
    the test's start). A clock that cannot be read counts as an exhausted budget.
    """

    TICK = 0.05
    MIN_STEP = 0.005  # between two CPU readings during one test

    def __init__(self, job, start, host, devnull, deadline, output, stats, clock, clean=False):
        self.clean = clean
        self.job, self.tests, self.host = job, job["_clean_tests" if clean else "tests"], host
        lim = job["limits"]
        self.default_cpu_s, self.default_wall_s = float(lim["test_cpu_s"]), float(lim["test_wall_s"])
        self.deadline, self.output, self.stats = deadline, output, stats
        self.out_cap = int(job["output_cap"])
        self.frames = _Frames(int(job["value_cap"]) + (1 << 16) + _TOKEN_BYTES)
        # The program can write to the result pipe too (it runs in the child): frames must carry this
        # fork's token, and must be the ones the test being timed can send, or the program fails.
        self.token = os.urandom(_TOKEN_BYTES)
        self.tampered = False
        self.over_budget = None  # the timeout's info, once the CPU budget is spent
        # stop-at-first-failure: a test whose value is not byte for byte its "expect" may have failed; the
        # child is stopped after it and the host decides (and resumes after it if it passed after all)
        self.early = bool(job.get("early_stop")) and not clean
        self.mismatch = self.stopped = False
        self.batch_cpu = None  # (reading, time) shared by the frames of one read
        self.loaded = self.program_failed = False
        self.clock = clock
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
            _child(job, start, res_w, out_w, devnull, self.__dict__.pop("token"), clean)
        os.close(res_w)
        os.close(out_w)
        os.set_blocking(res_r, False)
        os.set_blocking(out_r, False)
        stats["forks"] += 1
        self.pid, self.res_r, self.out_r = pid, res_r, out_r
        self.pidfd = os.pidfd_open(pid)
        self.cpu_ref, self.t_ref = clock.start(pid), time.monotonic()
        if self.cpu_ref is None:  # unreadable: every phase of this child counts as over budget
            self.cpu_ref = -float("inf")
        self._new_phase()

    def _new_phase(self):
        # the program's child times a test by the test's own budgets ("cpu_s", "wall_s") where it has
        # them; the program's load, and every expected value (clean child), by the job's
        test = self.tests[self.cur] if self.loaded and not self.clean and self.cur < len(self.tests) else {}
        self.cpu_s = float(test.get("cpu_s", self.default_cpu_s))
        self.wall_s = float(test.get("wall_s", self.default_wall_s))
        self.phase_start = time.monotonic()
        self.cpu_at_phase = self.cpu_ref + (self.phase_start - self.t_ref)
        self.cpu_check = self.phase_start + self.cpu_s / self.clock.ncpu

    def _phase_end(self):
        """At the end of the program's load or of a test: False if the phase overspent its budget.
        Frames read together arrived together: they share one reading."""
        if self.batch_cpu is None:  # () when only the child can have run: its own clock is checked below
            self.batch_cpu = (self.clock.read(), time.monotonic()) if self.clock.others() else ()
        if not self.batch_cpu:
            return True
        cpu, now = self.batch_cpu
        if cpu is None or cpu - self.cpu_at_phase >= self.cpu_s:
            self.over_budget = {"reason": "cpu"} if cpu is not None else _CLOCK_UNREADABLE
            return False
        self.cpu_ref, self.t_ref = cpu, now
        return True

    def _on_frame(self, frame):
        if self.tampered or self.over_budget or self.stopped:
            return
        if frame[:_TOKEN_BYTES] != self.token:
            self.tampered = True
            return
        frame = frame[_TOKEN_BYTES:]
        kind, n = frame[:1], len(frame)
        if kind == b"L" and n == 1 and not self.loaded and not self.program_failed:
            if not self._phase_end():
                return
            self.loaded = True
            if not self.clean:
                self.host.send(frame)
            self._new_phase()
        elif kind == b"P" and not self.loaded and not self.program_failed:
            self.program_failed = True
            if not self.clean:
                self.host.send(frame)
        elif (self.loaded and self.cur < len(self.tests) and n >= 5
              and _K.unpack_from(frame, 1)[0] == self.tests[self.cur]["k"] and self._expected(kind, frame)):
            if kind == b"D":
                if not self._phase_end():
                    return
                if not self.clean:  # the host learns a test's end from the program's child
                    self.host.send(frame)
                self.cur += 1
                if self.mismatch:
                    self.stopped = True
                    return
                self._new_phase()
            else:
                if self.early and self.tests[self.cur]["_expect"] is not None:
                    self.mismatch = self.mismatch or kind != b"V" or frame[7:] != self.tests[self.cur]["_expect"]
                self.host.send(frame)
        else:  # out of order, a test already ended, unknown type, a wrong length: never sent by _child
            self.tampered = True

    def _expected(self, kind, frame):
        """Whether the child running the current test can send this frame (type, length, expression)."""
        if kind == b"D":
            return len(frame) == 5
        if len(frame) < 7 or kind not in (b"V", b"E", b"K"):
            return False
        if kind == b"K":
            return not self.clean
        test, j = self.tests[self.cur], _KJ.unpack_from(frame, 1)[1]
        if j == _NO_EXPR:
            return kind == b"E"
        if test["mode"] != "eval" or j >= len(test["_exprs"]) or j in test["_known"]:
            return False
        return self.clean == (j in test["_clean"]) or (not self.clean and bool(self.job.get("_clean_failed")))

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
                self.batch_cpu = None
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
            if self.over_budget:
                return "T", self.over_budget
            if self.stopped:
                return "S", {}
            if exited:
                self._drain(self.res_r)
                self._drain(self.out_r)
                wstatus = self._reap()
                if self.tampered:
                    return "X", {"reason": "tampering"}
                if self.over_budget:
                    return "T", self.over_budget
                if self.stopped:
                    return "S", {}
                if self.program_failed or self.cur >= len(self.tests):
                    return None
                return "C", {"reason": "died", "exit": os.waitstatus_to_exitcode(wstatus)}
            now = time.monotonic()
            if now >= self.deadline:
                return "T", {"reason": "program_deadline"}
            if now - self.phase_start >= self.wall_s:
                return "T", {"reason": "wall"}
            if now >= self.cpu_check:
                cpu = self.clock.read()
                if cpu is None:
                    if select.select([self.pidfd], [], [], 0)[0]:
                        continue  # the child has just exited: handled above on the next turn
                    return "T", _CLOCK_UNREADABLE
                used = cpu - self.cpu_at_phase
                self.cpu_ref, self.t_ref = cpu, now
                if used >= self.cpu_s:
                    return "T", {"reason": "cpu"}
                # not yet: look again once the rest of the budget could have been spent on every CPU
                self.cpu_check = now + max((self.cpu_s - used) / self.clock.ncpu, self.MIN_STEP)

    def _reap(self):
        _, wstatus, usage = os.wait4(self.pid, 0)
        self.reaped = True
        self.stats["cpu_s"] += usage.ru_utime + usage.ru_stime
        if self.clean:  # expected values, computed without the program: reported apart as well
            self.stats["expected_cpu_s"] += usage.ru_utime + usage.ru_stime
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
        if self.job.get("scratch"):  # after every child: a resumed child starts on an empty scratch too
            left = _wipe(self.job["scratch"])
            if left:
                self.stats["scratch_left"] = left
        n = len(self.tests)
        if verdict is None or self.program_failed or verdict[0] == "S":
            return n
        kind, info = verdict
        if kind == "X":  # nothing this program reports can be trusted: stop here
            self.host.send(b"X" + json.dumps(info).encode())
            return n
        if self.clean:  # the setup alone died or hung on an expected value: that test errors
            if self.loaded and self.cur < n:
                test = self.tests[self.cur]
                j = min(test["_clean"])
                self.host.send(b"E" + _KJ.pack(test["k"], j) + json.dumps(
                    {"type": "expected_value_" + ("timeout" if kind == "T" else "crashed"),
                     "msg": info.get("reason", "")}).encode())
                return self.cur + 1
            return n
        if not self.loaded:  # the program itself hung or died: no test can run
            self.host.send(kind.encode() + _K.pack(-1) + json.dumps(info).encode())
            return n
        if self.cur >= n:
            return n
        self.host.send(kind.encode() + _K.pack(self.tests[self.cur]["k"]) + json.dumps(info).encode())
        if info.get("reason") == "program_deadline" or self.job.get("stop_at_first_failure"):
            return n  # stop-at-first-failure: a test that timed out or crashed is a failure, the host skips the rest
        return self.cur + 1


def _drop_privileges(uid, gid):
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _no_signal_handlers():
    """The kernel drops every signal sent to pid 1 from inside its own namespace whose handler is the
    default; a handler would make it deliverable (Python installs one for SIGINT). Ignored ones stay."""
    for sig in signal.valid_signals():
        try:
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass


def main(argv):
    uid = gid = cpu_fd = None
    scratch = None
    it = iter(argv)
    for a in it:
        if a == "--uid":
            uid = int(next(it))
        elif a == "--gid":
            gid = int(next(it))
        elif a == "--scratch":
            scratch = next(it)
        elif a == "--cpu-fd":
            cpu_fd = int(next(it))
    if uid is not None and os.getuid() == 0:
        _drop_privileges(uid, gid if gid is not None else uid)
    _no_signal_handlers()
    # Test code the host rewrote calls a constant (replaced by the checker at compile time): not a
    # mistake. (Set here, not at import: the host imports this module for its value encoding.)
    warnings.filterwarnings("ignore", category=SyntaxWarning)
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
    clock = _CpuClock(cpu_fd)
    gc.freeze()  # objects made so far are never scanned by a child's collector (no copy-on-write)
    host.send(b"R" + json.dumps({"python": sys.version.split()[0], "pid": os.getpid(),
                                  "uid": os.getuid()}).encode())
    host.flush()
    while True:
        req = host.recv()
        if req is None:
            return 0
        job = json.loads(req)
        host.seq = _SEQ.pack(int(job["seq"]) & 0xFFFFFFFF)
        if scratch:
            job["scratch"] = scratch
        _run_job(job, host, devnull, clock)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
