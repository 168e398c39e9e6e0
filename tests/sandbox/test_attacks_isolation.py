"""Attacks on pid 1 and on later programs: what one program does must not reach the harness (pid 1 of
the sandbox), the programs after it on the same worker, or another pool. Real bwrap, seccomp and
cgroups; each attack is followed by a control program on the same worker.

Classes: limits and scheduling of other processes (prlimit64, setpriority, sched_*, ioprio_set),
signals to pid 1, what is left in the scratch directory, CPU spent by children the program never
reaps, and cgroup ownership across pools (other pid namespaces included).
"""
import fcntl
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox import Job, SandboxPool
from sandbox import cgroups as cg
from sandbox import harness

from .conftest import slot_uid_processes

GOOD = "def add(a, b):\n    return a + b\n"
GOOD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]
HAVE_CGROUPS = cg.detect() is not None
needs_cgroups = pytest.mark.skipif(not HAVE_CGROUPS, reason="this host lets us create no cgroups")
REPO = Path(__file__).resolve().parents[2]


def ded(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


def harness_pid(worker) -> int:
    """The host pid of a worker's harness (bwrap's only child)."""
    pid = worker.proc.pid
    return int(open(f"/proc/{pid}/task/{pid}/children").read().split()[0])


def assert_worker_healthy(pool, restarts_before):
    assert [w.restarts for w in pool.workers] == restarts_before, "a worker had to be restarted"
    assert not slot_uid_processes(pool), "processes left behind"
    for _ in pool.workers:
        ok = pool.run(Job("control", GOOD, GOOD_TESTS))
        assert ok.all_passed, ok.to_dict()


@pytest.fixture(scope="module")
def pool1():
    with SandboxPool(workers=1, timeout_s=2.0, program_timeout_s=30.0) as p:
        yield p


# ----------------------------------------------------------------------------- limits and scheduling
# Each line: a call aimed at pid 1 (or at every process of the uid, or at pid 1 spelled with high bits
# the kernel drops). Raw syscalls (x86_64 numbers), so no libc wrapper can hide one.
REACH_PID1 = ded("""
    import ctypes, os, resource
    libc = ctypes.CDLL(None, use_errno=True)
    lim = (ctypes.c_ulong * 2)(8, 8)
    param = ctypes.c_int(0)
    mask = ctypes.c_ulong(1)
    HI = 1 << 32
    def sc(name, nr, *args):
        r = libc.syscall(nr, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
        print(name, "OK" if r >= 0 else "DENIED", ctypes.get_errno())
    sc("prlimit64_pid1_nofile", 302, 1, resource.RLIMIT_NOFILE, ctypes.byref(lim), 0)
    sc("prlimit64_pid1_as", 302, 1, resource.RLIMIT_AS, ctypes.byref(lim), 0)
    sc("prlimit64_pid1_high_bits", 302, HI | 1, resource.RLIMIT_NOFILE, ctypes.byref(lim), 0)
    sc("setpriority_pid1", 141, 0, 1, 19)
    sc("setpriority_user", 141, 2, 0, 19)
    sc("setpriority_pgrp", 141, 1, 0, 19)
    sc("setpriority_high_bits", 141, 0, HI | 1, 19)
    sc("sched_setscheduler_pid1", 144, 1, 5, ctypes.byref(param))
    sc("sched_setparam_pid1", 142, 1, ctypes.byref(param))
    sc("sched_setaffinity_pid1", 203, 1, 8, ctypes.byref(mask))
    sc("sched_setattr_pid1", 314, 1, ctypes.create_string_buffer(56), 0)
    sc("ioprio_set_pid1", 251, 1, 1, (3 << 13) | 7)
    sc("ioprio_set_user", 251, 3, 0, (3 << 13) | 7)
    sc("kill_pid1_sigint", 62, 1, 2)
    sc("kill_pid1_high_bits", 62, HI | 1, 2)
    sc("tkill_pid1", 200, 1, 2)
    sc("tgkill_pid1", 234, 1, 1, 2)
    sc("rt_sigqueueinfo_pid1", 129, 1, 2, ctypes.create_string_buffer(128))
    sc("rt_tgsigqueueinfo_pid1", 297, 1, 1, 2, ctypes.create_string_buffer(128))
    sc("pidfd_open_pid1", 434, 1, 0)
""") + GOOD

# What a correct program may still do to itself.
ON_ITSELF = ded("""
    import os, resource
    done = []
    os.nice(3); done.append("nice")
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32)); done.append("setrlimit")
    resource.prlimit(0, resource.RLIMIT_CORE, (0, 0)); done.append("prlimit0")
    os.sched_setaffinity(0, os.sched_getaffinity(0)); done.append("affinity0")
    os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 1); done.append("setpriority0")
    def f():
        return done
""")

STATE = ded("""
    import os, resource
    def state():
        return [os.getpriority(os.PRIO_PROCESS, 0), list(resource.getrlimit(resource.RLIMIT_NOFILE)),
                list(resource.getrlimit(resource.RLIMIT_AS)), sorted(os.sched_getaffinity(0)),
                os.sched_getscheduler(0)]
""")


def _state(pool):
    r = pool.run(Job("state", STATE, ["assert state() == 0"]))
    assert r.tests[0].status == "failed", r.to_dict()
    return r.tests[0].detail


def test_program_cannot_change_limits_scheduling_or_signals_of_pid1(pool1):
    before = _state(pool1)
    restarts = [w.restarts for w in pool1.workers]
    r = pool1.run(Job("reach_pid1", REACH_PID1, GOOD_TESTS))
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 20, r.output
    assert all(" DENIED 1" in line for line in lines), r.output  # EPERM, from the seccomp filter
    assert r.all_passed, r.to_dict()  # and the harness survived to score it
    assert _state(pool1) == before  # later programs start with the limits and scheduling of before
    assert_worker_healthy(pool1, restarts)


def test_a_program_may_still_change_its_own_limits_and_priority(pool1):
    before = _state(pool1)
    r = pool1.run(Job("self", ON_ITSELF, ["assert f() == ['nice', 'setrlimit', 'prlimit0', 'affinity0', "
                                          "'setpriority0']"]))
    assert r.all_passed, (r.to_dict(), r.output)
    assert _state(pool1) == before  # and what it did to itself ends with it


def test_pid1_catches_no_signal(pool1):
    # The second wall behind the seccomp filter: the kernel drops a signal sent to pid 1 from inside its
    # namespace unless pid 1 has a handler for it (Python installs one for SIGINT).
    pool1.run(Job("warm", GOOD, GOOD_TESTS[:1]))
    status = open(f"/proc/{harness_pid(pool1.workers[0])}/status").read()
    caught = [line for line in status.splitlines() if line.startswith("SigCgt:")][0]
    assert int(caught.split()[1], 16) == 0, caught


def test_signals_aimed_at_pid1_through_libc_leave_it_running(pool1):
    prog = ded("""
        import os, signal
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGKILL, signal.SIGSTOP):
            for target in (1, -1, os.getppid()):
                try:
                    os.kill(target, sig)
                except OSError:
                    pass
            try:
                os.killpg(1, sig)
            except OSError:
                pass
        """) + GOOD
    restarts = [w.restarts for w in pool1.workers]
    r = pool1.run(Job("signals", prog, GOOD_TESTS))
    assert r.all_passed, r.to_dict()
    assert_worker_healthy(pool1, restarts)


# ----------------------------------------------------------------------------- the scratch directory
DEEP_CHAIN = ded("""
    import os
    os.chdir("/tmp")
    for i in range(50):  # names the wipe might choose, planted in its way
        open(".wipe%d" % i, "w").close()
    os.mkdir(".wipe60"); open(".wipe60/x", "w").close()
    for i in range({depth}):
        os.mkdir("d")
        open("f", "w").write("x")
        os.symlink("/proc/self", "link")
        os.chdir("d")
        if i % 500 == 499:
            os.chmod("..", 0)  # a closed directory in the middle of the chain
    open("bottom", "w").write("x")
    os.chmod(".", 0)
    try:
        print("cwd", len(os.getcwd()))
    except OSError as e:
        print("getcwd fails", e.errno)
""") + GOOD

SEES_TMP = "import os\ndef tmp():\n    return sorted(os.listdir('/tmp'))\n"


@pytest.mark.parametrize("depth", [2100, 6000])
def test_a_directory_chain_past_path_max_does_not_survive(pool1, depth):
    restarts = [w.restarts for w in pool1.workers]
    r = pool1.run(Job("deep", DEEP_CHAIN.format(depth=depth), GOOD_TESTS))
    assert r.all_passed, r.to_dict()
    assert "getcwd fails" in r.output, r.output  # its own path cannot be named: past PATH_MAX indeed
    r = pool1.run(Job("after", SEES_TMP, ["assert tmp() == []"]))
    assert r.all_passed, r.to_dict()
    assert_worker_healthy(pool1, restarts)


def test_the_scratch_is_wiped_after_every_child_not_only_every_job(pool1):
    # The program marks /tmp when it loads; test 1 kills its child, so a fresh child re-runs the
    # program for test 2. That child must find /tmp empty, as the first one did.
    prog = ded("""
        import os
        FOUND = os.path.exists("/tmp/mark")
        open("/tmp/mark", "w").close()
        def crash():
            os._exit(3)
        def found():
            return FOUND
        """)
    r = pool1.run(Job("resume", prog, ["assert found() is False", "assert crash()", "assert found() is False"]))
    assert [t.status for t in r.tests] == ["passed", "crashed", "passed"], r.to_dict()


def test_wipe_is_fd_relative_and_reports_what_it_cannot_remove(tmp_path):
    top = tmp_path / "scratch"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(3000):  # deeper than PATH_MAX allows to name, built with relative calls only
            os.mkdir("d", dir_fd=fd)
            open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w").close()
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    try:
        assert harness._wipe(str(top)) == 0
        assert os.listdir(top) == []
    finally:  # pytest's own clean-up recurses, and cannot remove a tree this deep
        subprocess.run(["rm", "-rf", str(top / "d")])
    # What cannot be removed is counted, not ignored: a mount point cannot be removed by rmdir.
    (top / "m").mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "none", str(top / "m")], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    try:
        assert harness._wipe(str(top)) == 1
    finally:
        subprocess.run(["umount", str(top / "m")], check=True)


def test_a_worker_whose_scratch_cannot_be_emptied_is_restarted(tmp_path):
    # Unsafe mode puts the scratch on the host, where this test can put something in it that the
    # harness cannot remove (a mount point): the pool must then restart the worker.
    with pytest.warns(UserWarning):
        pool = SandboxPool(workers=1, unsafe_no_isolation=True)
    with pool:
        w = pool.workers[0]
        mnt = Path(w._scratch) / "m"
        mnt.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "none", str(mnt)], capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
        try:
            assert pool.run(Job("a", GOOD, GOOD_TESTS)).all_passed
            assert w.proc is None  # killed after the job: the wipe reported what it left
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
            os.rmdir(mnt)
            if mnt.parent.is_dir():  # the worker's own clean-up could not remove it past the mount
                os.rmdir(mnt.parent)
        assert pool.run(Job("b", GOOD, GOOD_TESTS)).all_passed
        assert w.restarts == 1


# ----------------------------------------------------------------------------- CPU of unreaped children
LEAVES_SPINNERS = ded("""
    import os, time
    def start():
        for _ in range(8):
            if os.fork() == 0:
                while True:
                    pass
        return 1
    def nap():
        time.sleep(1.0)  # no CPU in this process: the spinners spend it (wall backstop: 1.6 s)
        return 1
""")
SPIN_TESTS = ["assert start() == 1"] + ["assert nap() == 1"] * 5


@pytest.mark.parametrize("cgroups", ["auto", "off"])
def test_cpu_of_children_the_program_never_reaps_is_charged(cgroups):
    if cgroups == "auto" and not HAVE_CGROUPS:
        pytest.skip("this host lets us create no cgroups")
    with SandboxPool(workers=1, timeout_s=0.2, program_timeout_s=30.0, cgroups=cgroups) as p:
        if cgroups == "auto":
            assert p.cgroups.cpu_usage_file(0) is not None, "the slot's CPU usage is not accounted"
        r = p.run(Job("spinners", LEAVES_SPINNERS, SPIN_TESTS))
        statuses = [(t.status, t.reason) for t in r.tests]
        # 8 spinners have up to 2 CPU-seconds in a 1 s nap on 2 CPUs: even on a node loaded enough
        # to leave them a sixth of that, they spend the 0.2 s budget of some test; each test is
        # charged the CPU spent while it ran.
        assert ("timeout", "cpu") in statuses, (statuses, r.wall_s)
        # the fresh child after the timeout runs no spinner
        assert ("passed", "") in statuses[1:], (r.to_dict(), slot_uid_processes(p))
        assert not slot_uid_processes(p)
        assert p.run(Job("control", GOOD, GOOD_TESTS)).all_passed


@pytest.mark.parametrize("cgroups", ["auto", "off"])
def test_children_that_are_reaped_and_threads_keep_passing(cgroups):
    if cgroups == "auto" and not HAVE_CGROUPS:
        pytest.skip("this host lets us create no cgroups")
    prog = ded("""
        import os, threading
        def square(x):
            pid = os.fork()
            if pid == 0:
                os._exit(x * x % 256)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        def threaded(x):
            out = []
            t = threading.Thread(target=lambda: out.append(x + 1))
            t.start(); t.join()
            return out[0]
        """)
    tests = [f"assert square({i}) == {i * i}" for i in range(10)] + [f"assert threaded({i}) == {i + 1}"
                                                                  for i in range(10)]
    with SandboxPool(workers=1, timeout_s=2.0, cgroups=cgroups) as p:
        r = p.run(Job("forks", prog, tests))
        assert r.all_passed, r.to_dict()


@needs_cgroups
def test_a_cpu_clock_that_cannot_be_read_counts_as_an_exhausted_budget(tmp_path):
    bad = tmp_path / "cpu.usage"
    bad.write_text("not a number\n")
    with SandboxPool(workers=1, timeout_s=2.0) as p:
        p.cgroups.cpu_files[0] = str(bad)
        p.workers[0].restart()
        r = p.run(Job("noclock", GOOD, GOOD_TESTS))
        assert all((t.status, t.reason) == ("timeout", "cpu") for t in r.tests), r.to_dict()
        assert all("CPU clock could not be read" in t.detail for t in r.tests), r.to_dict()  # told apart


def test_the_program_sees_a_fine_grained_cpu_clock(pool):
    # A finite RLIMIT_CPU makes the kernel serve the process's CPU clock from timer ticks: a program
    # that spins for 2 ms of process_time() then spends a whole tick (4 ms at HZ=250) per call, and
    # measures its own work wrongly. Budgets are pid 1's to enforce, so the child has no RLIMIT_CPU.
    prog = ded("""
        import resource, time
        def steps():
            seen, t0 = set(), time.monotonic()
            while time.monotonic() - t0 < 0.05:
                seen.add(time.process_time())
            return len(seen)
        def cpu_limit():
            return resource.getrlimit(resource.RLIMIT_CPU)[0] == resource.RLIM_INFINITY
        """)
    r = pool.run(Job("clock", prog, ["assert steps() > 200", "assert cpu_limit()"]))
    assert r.all_passed, r.to_dict()


def test_a_program_that_ignores_every_signal_still_times_out(pool):
    prog = ded("""
        import signal
        for s in (signal.SIGXCPU, signal.SIGALRM, signal.SIGTERM, signal.SIGVTALRM, signal.SIGPROF):
            signal.signal(s, signal.SIG_IGN)
        def spin():
            while True:
                pass
        """)
    r = pool.run(Job("spin", prog, ["assert spin()", "assert 1 == 1"]))
    assert [(t.status, t.reason) for t in r.tests] == [("timeout", "cpu"), ("passed", "")], r.to_dict()


# ----------------------------------------------------------------------------- cgroup ownership
HOLD_POOL_CGROUPS = ded("""
    import sys
    from sandbox import cgroups as cg
    c = cg.SlotCgroups(cg.detect(), 1, 256 << 20, None, 8)
    dirs = (getattr(c, a, None) for a in ("mem_pool", "pids_pool", "cpu_pool", "pool"))
    print(os.getpid(), " ".join(p for p in dirs if p), flush=True)
    sys.stdin.read()  # hold the pool until the test closes our stdin
    c.close()
""")


def _pool_in_new_pid_namespace():
    """A process in a pid namespace of its own that creates pool cgroups (sweeping first) and holds them.
    Its pid there is made one that no process has here (ns_last_pid), as a container's pool would have."""
    unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
    if subprocess.run([*unshare, "true"], capture_output=True).returncode:
        pytest.skip("cannot create a pid namespace here (unshare --pid --mount-proc)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = 'echo 3999990 > /proc/sys/kernel/ns_last_pid 2>/dev/null; "$0" -c "$1"'
    proc = subprocess.Popen([*unshare, "sh", "-c", script, sys.executable, "import os\n" + HOLD_POOL_CGROUPS],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline().split()
    assert line, "the pool in the other pid namespace did not start"
    return proc, int(line[0]), line[1:]


def _dirs(c: cg.SlotCgroups) -> list[str]:
    return [p for p in (getattr(c, a, None) for a in ("mem_pool", "pids_pool", "cpu_pool", "pool")) if p]


@needs_cgroups
def test_pools_in_different_pid_namespaces_do_not_take_each_others_cgroups():
    with SandboxPool(workers=1) as mine:
        ours = _dirs(mine.cgroups)
        proc, their_pid, theirs = _pool_in_new_pid_namespace()  # its start-up sweep ran over our cgroups
        try:
            try:
                os.kill(their_pid, 0)
                pytest.skip(f"could not give the other namespace's pool a pid unused here ({their_pid})")
            except ProcessLookupError:
                pass  # its pid means nothing here, and ours nothing there
            assert all(os.path.isdir(d) for d in ours), "another pid namespace's pool removed ours"
            assert mine.run(Job("still", GOOD, GOOD_TESTS)).all_passed
            assert mine.workers[0].restarts == 0
            with SandboxPool(workers=1) as second:  # our sweep runs over theirs
                assert all(os.path.isdir(d) for d in theirs), "we removed another pid namespace's pool"
                assert second.run(Job("second", GOOD, GOOD_TESTS)).all_passed
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
        assert not any(os.path.isdir(d) for d in theirs)  # its own close removed them


@needs_cgroups
def test_a_pool_cgroup_whose_owner_is_gone_is_removed_and_a_locked_one_kept():
    probe = cg.SlotCgroups(cg.detect(), 1, 256 << 20, None, 8)
    parent = os.path.dirname(_dirs(probe)[0])
    probe.close()
    stale = os.path.join(parent, cg._PREFIX + "0123456789abcdef")
    held = os.path.join(parent, cg._PREFIX + "fedcba9876543210")
    legacy = os.path.join(parent, cg._PREFIX + "999999-0")  # an older version's name: not ours to judge
    for d in (stale, held, legacy):
        os.makedirs(d, exist_ok=True)
    fd = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        c = cg.SlotCgroups(cg.detect(), 1, 256 << 20, None, 8)
        c.close()
        assert not os.path.exists(stale)
        assert os.path.isdir(held) and os.path.isdir(legacy)
    finally:
        os.close(fd)
        for d in (held, legacy, stale):
            if os.path.isdir(d):
                os.rmdir(d)


@needs_cgroups
def test_pool_cgroup_names_are_random_and_locked_while_the_pool_lives():
    a = cg.SlotCgroups(cg.detect(), 1, 256 << 20, None, 8)
    b = cg.SlotCgroups(cg.detect(), 1, 256 << 20, None, 8)
    try:
        assert set(_dirs(a)).isdisjoint(_dirs(b))
        for d in _dirs(a) + _dirs(b):
            assert cg._NAME.fullmatch(os.path.basename(d)), d
            assert cg._try_lock(d) is None, f"{d} is not locked by its pool"
    finally:
        a.close()
        b.close()
    assert not any(os.path.exists(d) for d in _dirs(a) + _dirs(b))
