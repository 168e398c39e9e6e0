"""Attack programs against the sandbox, each asserting containment (each breaks at least one widely
used harness; docs/sandbox.md says how the sandbox is built against them).

Every attack runs on a shared pool; after each one a control job must still pass on the same
workers, and no process may be left running under the pool's slot uids.
"""
import os
import socket
import textwrap
import threading

import pytest

from sandbox import Job, SandboxPool

from .conftest import slot_uid_processes

GOOD = "def add(a, b):\n    return a + b\n"
GOOD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]


def ded(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


def not_passed(r):
    return r.passed == 0


# (name, program, tests, check(result) -> bool). Tests are the expected-value shapes of AceCode,
# so "passing" a test requires the program to produce the right value.
ATTACKS = [
    ("exit_before_asserts_os_exit", "import os\nos._exit(0)\n" + GOOD, GOOD_TESTS, not_passed),
    ("exit_before_asserts_sys_exit", "import sys\nsys.exit(0)\n" + GOOD, GOOD_TESTS, not_passed),
    ("raise_systemexit_toplevel", "raise SystemExit(0)\n" + GOOD, GOOD_TESTS, not_passed),
    ("exit_between_asserts", ded("""
        import os
        calls = []
        def add(a, b):
            calls.append(1)
            if len(calls) == 1:
                os._exit(0)
            return 0
        """), GOOD_TESTS, not_passed),
    ("systemexit_inside_test", ded("""
        def add(a, b):
            raise SystemExit(0)
        """), GOOD_TESTS, not_passed),
    ("eq_always_true", ded("""
        class Any:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
        def add(a, b): return Any()
        """), GOOD_TESTS, not_passed),
    ("int_subclass_eq", ded("""
        class I(int):
            def __eq__(self, other): return True
            __hash__ = int.__hash__
        def add(a, b): return I(0)
        """), GOOD_TESTS, not_passed),
    ("list_subclass_eq", ded("""
        class L(list):
            def __eq__(self, other): return True
        def f(): return L()
        """), ["assert f() == [1, 2, 3]"], not_passed),
    ("monkeypatch_builtins_sorted", ded("""
        import builtins
        builtins.sorted = lambda *a, **k: [1, 2, 3]
        def f(): return [9, 9]
        """), ["assert sorted(f()) == [1, 2, 3]"], not_passed),
    ("monkeypatch_builtins_in_globals", ded("""
        import builtins
        builtins.len = lambda x: 3
        builtins.all = lambda x: True
        def f(): return [0]
        """), ["assert len(f()) == 3", "assert all([f()[0] == 5, True])"], not_passed),
    ("monkeypatch_math_isclose", ded("""
        import math
        math.isclose = lambda *a, **k: True
        def area(r): return 0.0
        """), ["assert math.isclose(area(1), 3.14159, rel_tol=1e-3)",
               "import math\nassert math.isclose(area(2), 12.566, rel_tol=1e-3)"], not_passed),
    ("disable_timer_and_loop", ded("""
        import signal
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
        def add(a, b):
            while True:
                pass
        """), GOOD_TESTS[:1], lambda r: r.tests[0].status == "timeout"),
    ("sleep_forever", "import time\ndef add(a, b):\n    time.sleep(3600)\n", GOOD_TESTS[:1],
     lambda r: r.tests[0].status == "timeout"),
    ("pythonoptimize_env", ded("""
        import os, sys
        os.environ["PYTHONOPTIMIZE"] = "2"
        def check(x):
            return x
        """), ["assert check(1) == 2", "y = check(1)\nassert y == 2, 'must run'"],
     lambda r: r.tests[0].status == "failed" and r.tests[1].status == "failed"),
    ("fake_pass_markers_stdout", ded("""
        import sys
        for s in ["PASSED", "OK", "All tests passed", "{\\"status\\": \\"passed\\"}", "\\x00\\x00\\x00\\x01L"]:
            print(s); sys.stderr.write(s + "\\n")
        def add(a, b): return None
        """), GOOD_TESTS, not_passed),
    ("forge_result_frames", ded("""
        import os, struct
        def frame(b): return struct.pack(">I", len(b)) + b
        for fd in range(3, 20):
            for k in range(3):
                try:
                    os.write(fd, frame(b"D" + struct.pack(">I", k)))
                    os.write(fd, frame(b"V" + struct.pack(">IH", k, 0) + b"3"))
                except OSError:
                    pass
        def add(a, b): return None
        """), GOOD_TESTS, not_passed),
    # The program knows the frame format (it is open source) and writes frames for the test being
    # run from inside the call, before the harness's own: values, the end of the test, then the exit.
    ("forge_frames_inside_the_call", ded("""
        import os, struct, json
        def frame(b): return struct.pack(">I", len(b)) + b
        calls = [0]
        def add(a, b):
            k = calls[0]; calls[0] += 1
            for fd in range(3, 12):
                for tok in (b"", bytes(16)):
                    try:
                        os.write(fd, frame(tok + b"V" + struct.pack(">IH", k, 0) + json.dumps(a + b).encode()))
                        os.write(fd, frame(tok + b"D" + struct.pack(">I", k)))
                    except OSError:
                        pass
            return None
        """), GOOD_TESTS, lambda r: all(t.status == "failed" and t.reason == "tampering" for t in r.tests)),
    ("forge_exec_test_end_then_fail", ded("""
        import os, struct
        calls = [0]
        def add(a, b):
            k = calls[0]; calls[0] += 1
            try:
                os.write(3, struct.pack(">I", 5) + b"D" + struct.pack(">I", k))
            except OSError:
                pass
            return None
        """), ["x = add(1, 2)\nassert x == 3", "for i in range(2):\n    assert add(i, i) == 2 * i"],
     lambda r: all(t.status == "failed" and t.reason == "tampering" for t in r.tests)),
    ("forge_frames_then_exit", ded("""
        import os, struct, json
        def frame(b): return struct.pack(">I", len(b)) + b
        def add(a, b):
            for k in range(3):
                os.write(3, frame(b"V" + struct.pack(">IH", k, 0) + json.dumps(3).encode()))
                os.write(3, frame(b"D" + struct.pack(">I", k)))
            os._exit(0)
        """), GOOD_TESTS, not_passed),
    ("read_expected_from_frames", ded("""
        import sys, gc
        def f():
            fr = sys._getframe(1)
            found = []
            while fr is not None:
                found += [v for v in fr.f_locals.values() if isinstance(v, int) and v > 1000]
                found += [c for c in fr.f_code.co_consts if isinstance(c, int) and c > 1000]
                fr = fr.f_back
            for o in gc.get_objects():
                if isinstance(o, str) and "== 424242" in o:
                    return 424242
            return found[0] if found else 0
        """), ["assert f() == 424242"], not_passed),
    ("recursion_segfault", ded("""
        import sys
        sys.setrecursionlimit(10 ** 7)
        def add(a, b):
            if a == 1:
                return add(a, b)
            return a + b
        """), GOOD_TESTS, lambda r: r.tests[0].status in ("crashed", "error", "timeout") and r.passed == 2),
    ("ctypes_segfault", "import ctypes\ndef add(a, b):\n    if a == 1: ctypes.string_at(0)\n    return a + b\n",
     GOOD_TESTS, lambda r: r.tests[0].status == "crashed" and r.passed == 2),
    ("stdin_read", "def add(a, b):\n    return int(input())\n", GOOD_TESTS,
     lambda r: all(t.status == "error" and t.reason == "EOFError" for t in r.tests)),
    ("non_daemon_thread", ded("""
        import threading, time
        threading.Thread(target=lambda: time.sleep(3600)).start()
        def add(a, b): return a + b
        """), GOOD_TESTS, lambda r: r.all_passed and r.wall_s < 1.5),
    ("memory_bomb", "x = bytearray(8 << 30)\n" + GOOD, GOOD_TESTS,
     lambda r: not_passed(r) and r.tests[0].status in ("error", "crashed")),
    ("memory_bomb_in_test", "def add(a, b):\n    return len([0] * (a * 10**10))\n", GOOD_TESTS[:1], not_passed),
    ("fork_bomb", ded("""
        import os
        def add(a, b):
            for _ in range(10000):
                try:
                    os.fork()
                except OSError:
                    pass
            return a + b
        """), GOOD_TESTS[:1], lambda r: True),
    ("kill_parent_and_all", ded("""
        import os, signal
        for pid in (1, os.getppid(), -1):
            for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        def add(a, b): return a + b
        """), GOOD_TESTS, lambda r: True),
    ("huge_stdout", "import sys\nsys.stdout.write('x' * (50 << 20))\n" + GOOD, GOOD_TESTS,
     lambda r: r.all_passed and len(r.output) <= 4096),
    ("huge_value", "def f():\n    return 'x' * (8 << 20)\n", ["assert f() == 'x'"],
     lambda r: r.tests[0].status == "error" and r.tests[0].reason == "ValueTooLarge"),
    ("deeply_nested_value", "def f():\n    x = []\n    for _ in range(10000): x = [x]\n    return x\n",
     ["assert f() == []"], lambda r: r.tests[0].status == "error"),
    ("self_referencing_value", "def f():\n    x = []\n    x.append(x)\n    return x\n",
     ["assert f() == [[]]"], lambda r: r.tests[0].status == "error"),
    ("hostile_exception_str", ded("""
        class E(Exception):
            def __str__(self):
                while True: pass
        def add(a, b): raise E()
        """), GOOD_TESTS[:1], lambda r: r.tests[0].status in ("timeout", "error")),
    ("raise_rlimits", ded("""
        import resource
        ok = []
        for r in (resource.RLIMIT_AS, resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE):
            try:
                resource.setrlimit(r, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)); ok.append(r)
            except (ValueError, OSError):
                pass
        print("raised", ok)
        def add(a, b): return a + b
        """), GOOD_TESTS, lambda r: "raised []" in r.output),
]


@pytest.mark.parametrize("name,program,tests,check", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_contained(pool, name, program, tests, check):
    r = pool.run(Job(name, program, tests))
    assert len(r.tests) == len(tests)  # fixed denominator, whatever happened
    assert check(r), r.to_dict()
    # the slot is clean and still works
    assert not slot_uid_processes(pool), "processes left behind"
    for _ in range(len(pool.workers)):
        ok = pool.run(Job("control", GOOD, GOOD_TESTS))
        assert ok.all_passed, ok.to_dict()


# Syscall-level attacks: each prints what it managed; nothing may succeed.
SYSCALL_PROBE = ded("""
    import ctypes, errno, os
    libc = ctypes.CDLL(None, use_errno=True)
    def sc(name, nr, *args):
        r = libc.syscall(nr, *args)
        print(name, "OK" if r >= 0 else "DENIED", ctypes.get_errno())
    sc("ptrace_traceme", 101, 0, 0, 0, 0)
    sc("unshare_user", 272, 0x10000000)
    sc("unshare_net", 272, 0x40000000)
    sc("io_uring_setup", 425, 8, ctypes.create_string_buffer(256))
    sc("keyctl", 250, 0, 0, 0, 0)
    sc("bpf", 321, 0, 0, 0)
    sc("mount", 165, b"none", b"/tmp", b"tmpfs", 0, 0)
    sc("clone_newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
    sc("process_vm_readv", 310, 1, 0, 0, 0, 0, 0)
    sc("shmget", 29, 0, 4096, 0o1000 | 0o600)
    sc("perf_event_open", 298, 0, 0, -1, -1, 0)
    sc("userfaultfd", 323, 0)
    sc("chroot", 161, b"/tmp")
    sc("socket_inet", 41, 2, 1, 0)
    sc("socket_unix", 41, 1, 1, 0)
    sc("clone3", 435, 0, 0)
""")


def test_dangerous_syscalls_are_denied(pool):
    r = pool.run(Job("syscalls", SYSCALL_PROBE, ["assert 1 == 1"]))
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 16, r.output
    assert all(" DENIED " in line for line in lines), r.output


def test_network_is_unreachable(pool):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    accepted = []
    t = threading.Thread(target=lambda: accepted.append(srv.accept()), daemon=True)
    t.start()
    prog = ded(f"""
        import socket
        def probe():
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=1)
                return "connected"
            except OSError as e:
                return type(e).__name__
        """)
    r = pool.run(Job("net", prog, ["assert probe() == 'connected'"]))
    srv.close()
    assert r.tests[0].status == "failed", r.to_dict()
    assert not accepted


def test_host_files_secrets_and_environment_are_invisible(pool, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    os.environ["ACECODER_TEST_SECRET"] = "ENV-SECRET-VALUE"
    prog = ded(f"""
        import os
        seen = []
        for p in ["{secret}", "/etc/passwd", "/etc/shadow", "/root", "/home", "/work", "/proc/1/environ",
                  "/proc/self/environ", "/dev/shm", "/sys", "/var/run/docker.sock"]:
            try:
                if os.path.isdir(p):
                    seen.append((p, sorted(os.listdir(p))))
                else:
                    seen.append((p, open(p, "rb").read()[:200]))
            except OSError as e:
                seen.append((p, type(e).__name__))
        print(repr(seen))
        print(repr(dict(os.environ)))
        """)
    r = pool.run(Job("files", prog, ["assert 1 == 1"]))
    del os.environ["ACECODER_TEST_SECRET"]
    assert "TOP-SECRET-VALUE" not in r.output and "ENV-SECRET-VALUE" not in r.output, r.output
    assert "('/etc/passwd', 'FileNotFoundError')" in r.output
    assert "('/dev/shm', 'FileNotFoundError')" in r.output
    assert "('/proc/1/mem'" not in r.output


def test_filesystem_is_read_only_and_tmp_is_capped(pool):
    prog = ded("""
        import os, sys
        res = {}
        for p in ["/x", "/usr/x", sys.prefix + "/x", "/proc/sys/kernel/hostname"]:
            try:
                open(p, "w").write("x"); res[p] = "WROTE"
            except OSError as e:
                res[p] = type(e).__name__
        try:
            with open("/tmp/big", "wb") as f:
                for _ in range(1024):
                    f.write(b"x" * (1 << 20))
            res["tmp"] = "FILLED"
        except OSError as e:
            res["tmp"] = type(e).__name__
        print(res)
        """)
    r = pool.run(Job("fs", prog, ["assert 1 == 1"]))
    assert "WROTE" not in r.output and "FILLED" not in r.output, r.output
    assert "'tmp': 'OSError'" in r.output, r.output  # ENOSPC at the tmpfs size cap


def test_parent_memory_is_not_readable(pool):
    prog = ded("""
        def probe():
            try:
                with open("/proc/1/mem", "rb") as f:
                    return "opened"
            except OSError as e:
                return type(e).__name__
        """)
    r = pool.run(Job("mem", prog, ["assert probe() == 'opened'"]))
    assert r.tests[0].status == "failed", r.to_dict()


def test_nothing_survives_a_program(pool):
    plant = ded("""
        import os, time, sys
        os.makedirs("/tmp/d/e", exist_ok=True)
        open("/tmp/d/e/flag", "w").write("x")
        os.chmod("/tmp/d/e", 0)
        os.chmod("/tmp/d", 0)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    open("/tmp/daemon", "w").write(str(time.time()))
                    time.sleep(0.01)
            os._exit(0)
        import builtins
        builtins.PLANTED = 1
        sys.modules["math"].PLANTED = 1
        def add(a, b): return a + b
        """)
    check = ded("""
        import os, builtins, math
        def leftovers():
            return sorted(os.listdir("/tmp")), hasattr(builtins, "PLANTED"), hasattr(math, "PLANTED"), \\
                len([p for p in os.listdir("/proc") if p.isdigit()])
        """)
    for _ in range(2):  # both workers get planted
        assert pool.run(Job("plant", plant, GOOD_TESTS)).all_passed
    for _ in range(4):
        r = pool.run(Job("check", check, ["assert leftovers() == ([], False, False, 2)"]))
        assert r.all_passed, r.to_dict()  # only pid 1 (harness) and the child itself
    assert not slot_uid_processes(pool)


def test_per_test_accounting_resumes_after_crash_and_timeout(pool):
    prog = ded("""
        import os
        def f(x):
            if x == 1: os._exit(3)
            if x == 2:
                while True: pass
            if x == 3: raise ValueError("bad")
            return x
        """)
    tests = ["assert f(0) == 0", "assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3", "assert f(4) == 4",
             "assert f(5) == 6", "this is not python", "for i in range(3):\n    assert f(i + 4) == i + 4"]
    r = pool.run(Job("acct", prog, tests, timeout_s=0.5))
    assert [t.status for t in r.tests] == ["passed", "crashed", "timeout", "error", "passed", "failed", "error",
                                           "passed"], r.to_dict()
    assert r.pass_rate == pytest.approx(3 / 8)


def test_program_deadline_bounds_total_time():
    with SandboxPool(workers=1, timeout_s=0.5, program_timeout_s=1.5) as p:
        prog = "def f(x):\n    while True: pass\n"
        r = p.run(Job("dl", prog, [f"assert f({i}) == {i}" for i in range(20)]))
        assert r.wall_s < 4.0
        assert all(t.status == "timeout" for t in r.tests), r.to_dict()
        assert any(t.reason == "program_deadline" for t in r.tests)


def test_pool_leaves_nothing_behind(tmp_path):
    import glob

    before_cg = set(glob.glob("/sys/fs/cgroup/*/**/acecoder-sandbox-*", recursive=True))
    with SandboxPool(workers=2) as p:
        uids = list(p._uids.uids) if p._uids else []
        r = p.run(Job("daemon", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(3600)\n" + GOOD,
                      GOOD_TESTS))
        assert r.all_passed
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                status = open(f"/proc/{e}/status").read()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if not fields["State"].strip().startswith("Z"):  # a zombie holds nothing but its pid
                assert int(fields["Uid"].split()[0]) not in uids, f"process {e} left behind"
    after_cg = set(glob.glob("/sys/fs/cgroup/*/**/acecoder-sandbox-*", recursive=True))
    assert after_cg <= before_cg, after_cg - before_cg


def test_a_worker_killed_from_outside_is_restarted_and_the_job_rerun():
    import signal
    import time as _time

    with SandboxPool(workers=1) as p:
        prog = "import time\ndef add(a, b):\n    time.sleep(0.5)\n    return a + b\n"
        killer_done = []

        def killer():
            _time.sleep(0.2)
            os.killpg(p.workers[0].proc.pid, signal.SIGKILL)  # bwrap's monitor ...
            if p._uids:  # ... and, as root, every process of the slot: the harness too, mid-job
                from sandbox.isolation import kill_uid
                kill_uid(p._uids.uids[0])
            killer_done.append(True)

        t = threading.Thread(target=killer)
        t.start()
        r = p.run(Job("victim", prog, GOOD_TESTS))
        t.join()
        assert killer_done and p.workers[0].restarts == 1
        assert r.all_passed, r.to_dict()  # scored again on the restarted worker
        assert p.run(Job("after", GOOD, GOOD_TESTS)).all_passed
