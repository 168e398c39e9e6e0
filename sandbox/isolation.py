"""How a sandbox worker is started: bwrap arguments, the seccomp filter, the interpreter's files,
per-slot uids, and the checks that refuse to start when isolation is not available.

Layout inside the sandbox: an empty read-only root; the interpreter's binary, shared libraries and
standard library bound read-only at their host paths (site-packages masked); /proc of a fresh pid
namespace; /dev with null, zero, random and urandom only (no /dev/shm); a size-capped private /tmp;
no network interfaces; an empty environment. As host root, no user namespace: the harness drops to
the slot's own unprivileged uid before it serves any job (so RLIMIT_NPROC counts per slot). As an
ordinary user, an unprivileged user namespace with further namespaces disabled.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .types import SandboxConfig

HARNESS_PATH = Path(__file__).with_name("harness.py")
SANDBOX_HARNESS = "/.sandbox/harness.py"
SCRATCH = "/tmp"


class SandboxUnavailable(RuntimeError):
    """Isolation cannot be set up on this host; the message says what is missing and how to fix it."""


# ----------------------------------------------------------------------------- seccomp
# Denied with EPERM: kernel attack surface and everything that would let a program leave, persist
# across programs (SysV IPC, message queues, keyrings) or reach another process's memory.
_DENY = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "acct", "swapon", "swapoff", "reboot", "sethostname", "setdomainname", "syslog",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "quotactl", "quotactl_fd",
    "name_to_handle_at", "open_by_handle_at", "lookup_dcookie", "uselib", "personality",
    "iopl", "ioperm", "vhangup", "fanotify_init", "process_madvise",
    "shmget", "shmat", "shmctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl",
    "semget", "semop", "semctl", "semtimedop",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    "socket",  # no network, no unix sockets (socketpair stays: it reaches nothing outside)
    "landlock_create_ruleset", "memfd_secret",
)
_CLONE_NEW = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
              0x40000000, 0x00000080)  # NEWNS UTS IPC USER PID NET CGROUP TIME
_TIOCSTI = 0x5412
# Calls that change another process's limits or scheduling: a program shares pid 1's uid, and a change
# to pid 1 is inherited by every later program. Allowed only on the calling process itself (pid 0):
# (syscall, ((argument, value it must have), ...)); any other value is EPERM. The comparisons are on
# all 64 bits, so a value that the kernel would truncate to the allowed one is refused too.
_SELF_ONLY = (
    ("prlimit64", ((0, 0),)),
    ("setpriority", ((0, 0), (1, 0))),  # which = PRIO_PROCESS, who = 0 (not a group, not a user)
    ("sched_setparam", ((0, 0),)), ("sched_setscheduler", ((0, 0),)),
    ("sched_setaffinity", ((0, 0),)), ("sched_setattr", ((0, 0),)),
    ("ioprio_set", ((0, 1), (1, 0))),  # which = IOPRIO_WHO_PROCESS, who = 0
)
# Calls that signal a pid chosen by the caller, with the arguments that name a pid: pid 1 is never a
# target (it also catches no signal, so the kernel drops any that reach it from inside; this is the
# second wall). Compared on the low 32 bits, as the kernel reads a pid_t.
_NOT_PID1 = (("kill", (0,)), ("tkill", (0,)), ("tgkill", (0, 1)), ("rt_sigqueueinfo", (0,)),
             ("rt_tgsigqueueinfo", (0, 1)), ("pidfd_open", (0,)))


def seccomp_filter_fd() -> int:
    """A fresh memfd holding the compiled BPF program (bwrap reads its --seccomp fd to EOF)."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in _DENY:
        try:
            f.add_rule(eperm, name)
        except (ValueError, OSError):  # a syscall this kernel/libseccomp does not know
            continue
    for flag in _CLONE_NEW:
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory that seccomp cannot read: make libc fall back to clone.
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))
    for name, required in _SELF_ONLY:
        for arg, value in required:  # one rule per argument: any one that differs is refused
            f.add_rule(eperm, name, sc.Arg(arg, sc.NE, value))
    for name, args in _NOT_PID1:
        for arg in args:
            f.add_rule(eperm, name, sc.Arg(arg, sc.MASKED_EQ, 0xFFFFFFFF, 1))
    fd = os.memfd_create("sandbox-seccomp", 0)
    with os.fdopen(os.dup(fd), "wb", closefd=True) as w:
        f.export_bpf(w)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def data_fd(data: bytes, name: str) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# ----------------------------------------------------------------------------- interpreter files
@dataclass(frozen=True)
class Interpreter:
    executable: str
    ro_dirs: tuple[str, ...]  # bound read-only, whole
    ro_files: tuple[str, ...]  # shared libraries, one by one
    masked: tuple[str, ...]  # directories hidden under an empty tmpfs (site-packages)


@lru_cache(maxsize=8)
def discover_interpreter(python: str | None) -> Interpreter:
    """The files an interpreter needs: its binary, its libraries (ldd) and its standard library."""
    if python is None:
        python = getattr(sys, "_base_executable", None) or sys.executable
    exe = os.path.realpath(shutil.which(python) or python)
    if not os.access(exe, os.X_OK):
        raise SandboxUnavailable(f"sandbox interpreter {python!r} is not executable; set sandbox python")
    probe = ("import sys, sysconfig, json; p = sysconfig.get_paths(); print(json.dumps({'stdlib': p['stdlib'], "
             "'platstdlib': p['platstdlib'], 'purelib': p['purelib'], 'platlib': p['platlib'], "
             "'version': sys.version_info[:2]}))")
    info = json.loads(subprocess.run([exe, "-I", "-S", "-c", probe], check=True, capture_output=True,
                                     text=True, env={}).stdout)
    if tuple(info["version"]) < (3, 9):
        raise SandboxUnavailable(f"sandbox interpreter {exe} is Python {info['version']}; 3.9+ is needed")
    dirs = {os.path.realpath(info["stdlib"]), os.path.realpath(info["platstdlib"])}
    objects = [exe]
    for d in dirs:
        dyn = os.path.join(d, "lib-dynload")
        if os.path.isdir(dyn):
            objects += [os.path.join(dyn, n) for n in os.listdir(dyn) if n.endswith(".so")]
    libs: set[str] = set()
    out = subprocess.run(["ldd", *objects], capture_output=True, text=True, env={}).stdout
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else (parts[0] if parts else "")
        if path.startswith("/") and os.path.exists(path):
            libs.add(path)  # the path the loader asks for
            libs.add(os.path.realpath(path))  # and the file it lands on
    masked = tuple(sorted({os.path.realpath(info[k]) for k in ("purelib", "platlib")
                           if os.path.isdir(info[k]) and any(os.path.realpath(info[k]).startswith(d) for d in dirs)}))
    ro_files = tuple(sorted(p for p in libs if not any(p.startswith(d + "/") for d in dirs)))
    if exe not in ro_files and not any(exe.startswith(d + "/") for d in dirs):
        ro_files = (exe, *ro_files)
    return Interpreter(exe, tuple(sorted(dirs)), ro_files, masked)


# ----------------------------------------------------------------------------- per-slot uids
class UidLease:
    """As root, each slot runs as its own unprivileged uid; a lock file keeps two pools apart."""

    def __init__(self, base: int, count: int):
        self.dir = os.path.join(tempfile.gettempdir(), "acecoder-sandbox-uids")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.uids: list[int] = []
        self._fds: list[int] = []
        uid = base
        while len(self.uids) < count:
            if uid - base > 100_000:
                raise SandboxUnavailable("no free sandbox uid found; raise sandbox uid_base")
            fd = os.open(os.path.join(self.dir, f"{uid}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
            else:
                self.uids.append(uid)
                self._fds.append(fd)
            uid += 1

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


def kill_uid(uid: int) -> int:
    """Kill every live process running as ``uid`` (a slot's own uid: nothing else runs as it).
    Returns how many were found; zombies are not counted (they hold no resources but a pid)."""
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        try:
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith(("Z", "X")):
                os.kill(int(entry), 9)
                killed += 1
        except (KeyError, ValueError, IndexError, ProcessLookupError):
            continue
    return killed


# ----------------------------------------------------------------------------- bwrap
def bwrap_argv(cfg: SandboxConfig, interp: Interpreter, uid: int | None, seccomp_fd: int,
               harness_fd: int, cpu_fd: int | None = None) -> list[str]:
    """``cpu_fd``: an fd open on the slot cgroup's CPU usage, inherited by the harness (--cpu-fd)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap is not installed: apt-get install bubblewrap (or dnf install bubblewrap)")
    a = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if os.getuid() != 0:
        a += ["--unshare-user", "--disable-userns"]
    a += ["--die-with-parent", "--new-session", "--as-pid-1", "--hostname", "sandbox"]
    bound: list[str] = []
    for d in interp.ro_dirs:
        a += ["--ro-bind", d, d]
        bound.append(d)
    for p in interp.ro_files:
        a += ["--ro-bind", p, p]
    for p in cfg.extra_ro_paths:
        real = os.path.realpath(p)
        a += ["--ro-bind", real, real]
        bound.append(real)
    for m in interp.masked:
        a += ["--perms", "0555", "--size", "4096", "--tmpfs", m, "--remount-ro", m]
    a += ["--dir", "/dev"]
    for dev in ("null", "zero", "random", "urandom"):
        a += ["--dev-bind", f"/dev/{dev}", f"/dev/{dev}"]
    a += ["--symlink", "/proc/self/fd", "/dev/fd"]
    a += ["--proc", "/proc"]
    a += ["--perms", "1777", "--size", str(cfg.tmpfs_mb << 20), "--tmpfs", SCRATCH]
    a += ["--ro-bind-data", str(harness_fd), SANDBOX_HARNESS]
    # Directories bwrap creates on the way to a bind keep the host's mode (/root is 0700): open them
    # up so the slot's unprivileged uid can reach the interpreter.
    targets = [*interp.ro_dirs, *interp.ro_files, *bound, SANDBOX_HARNESS]
    parents = sorted({str(q) for t in targets for q in Path(t).parents if str(q) != "/"
                      and not any(str(q) == b or str(q).startswith(b + "/") for b in bound)})
    for p in parents:
        a += ["--chmod", "0755", p]
    a += ["--remount-ro", "/", "--chdir", SCRATCH, "--clearenv",
          "--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", SCRATCH, "--setenv", "TMPDIR", SCRATCH,
          "--seccomp", str(seccomp_fd)]
    a += [interp.executable, "-I", "-S", "-B", "-X", "utf8", SANDBOX_HARNESS, "--scratch", SCRATCH]
    if uid is not None:
        a += ["--uid", str(uid), "--gid", str(uid)]
    if cpu_fd is not None:
        a += ["--cpu-fd", str(cpu_fd)]
    return a


def unsafe_argv(interp: Interpreter, scratch: str) -> list[str]:
    return [interp.executable, "-I", "-S", "-B", "-X", "utf8", str(HARNESS_PATH), "--scratch", scratch]


def check_host(cfg: SandboxConfig) -> None:
    """Refuse early, with the fix, when bwrap or seccomp cannot work here."""
    if cfg.unsafe_no_isolation:
        return
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    try:
        import pyseccomp  # noqa: F401
        fd = seccomp_filter_fd()
        os.close(fd)
    except (ImportError, OSError, RuntimeError) as e:
        raise SandboxUnavailable(f"seccomp is unavailable ({e}): pip install pyseccomp and "
                                 "apt-get install libseccomp2") from None
    if os.getuid() != 0:
        probe = subprocess.run(["bwrap", "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "true"],
                               capture_output=True, text=True, env={})
        if probe.returncode != 0:
            raise SandboxUnavailable(
                "bwrap cannot create an unprivileged user namespace here "
                f"({probe.stderr.strip()}). Fix: on Debian/Ubuntu `sysctl kernel.unprivileged_userns_clone=1`; "
                "on Ubuntu 24.04+ `sysctl kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor "
                "profile for bwrap; in a container, run it with user namespaces allowed (e.g. "
                "--security-opt seccomp=unconfined) or as root.")
