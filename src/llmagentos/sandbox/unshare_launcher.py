"""The ``unshare`` backend's launcher: run as ``python -I -S -c <this file> <spec>``.

It starts as (namespace) root, pid 1 of fresh PID and mount namespaces, and:
mounts a private root (tmpfs) holding read-only binds of ``/usr`` and the interpreter,
a new ``/proc``, a few device nodes, and size-capped ``/sandbox`` and ``/tmp``; forks
the child that chroots there, drops to uid 65534 (or, without root, drops every
capability), sets the rlimits and execs Python; then reaps until that child exits and
exits with its status (``128 + N`` for signal ``N``, like bubblewrap).

Standard library only: it is shipped as source text, not imported.
"""

import ctypes
import json
import os
import resource
import shutil
import signal
import sys
from typing import Any, NoReturn

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 32, 4096, 1024, 2048, 1 << 21
ST_RELATIME = 4096
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
LAUNCH_FAILED = 125
DEVICES = ("null", "zero", "full", "random", "urandom")
RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
}

libc = ctypes.CDLL(None, use_errno=True)


def fail(step: str, detail: str = "") -> NoReturn:
    sys.stderr.write(f"sandbox launcher: {step} failed: {detail}\n")
    sys.stderr.flush()
    os._exit(LAUNCH_FAILED)


def check(result: int, step: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        fail(step, f"[Errno {err}] {os.strerror(err)}")


def _encode(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    check(
        libc.mount(_encode(source), _encode(target), _encode(fstype), flags, _encode(data)),
        f"mount {fstype or source} on {target}",
    )


def locked_flags(path: str) -> int:
    """The flags of the mount holding ``path`` that a remount must keep."""
    flag = os.statvfs(path).f_flag
    kept = flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    return kept | (MS_RELATIME if flag & ST_RELATIME else 0)


def bind_readonly(source: str, target: str) -> None:
    os.makedirs(target, mode=0o755, exist_ok=True)
    mount(source, target, None, MS_BIND)
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | locked_flags(source)
    mount(None, target, None, flags)


def build_root(spec: dict[str, Any]) -> None:
    root = spec["root"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for path in spec["binds"]:
        bind_readonly(path, root + path)
    for target, link in spec["links"]:
        os.symlink(target, root + link)
    os.mkdir(root + "/proc", 0o555)
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.mkdir(root + "/dev", 0o755)
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEVICES:
        node = f"{root}/dev/{name}"
        open(node, "w").close()
        mount(f"/dev/{name}", node, None, MS_BIND)
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        os.symlink(f"/proc/self/fd/{fd}", f"{root}/dev/{name}")
    os.symlink("/proc/self/fd", root + "/dev/fd")
    size = f"size={spec['disk_bytes']}"
    for place in ("/tmp", spec["workdir"]):
        os.mkdir(root + place, 0o755)
        mount("tmpfs", root + place, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777," + size)
    uid = spec["uid"]
    for relative, host in spec["files"]:
        target = f"{root}{spec['workdir']}/{relative}"
        os.makedirs(os.path.dirname(target), mode=0o777, exist_ok=True)
        shutil.copyfile(host, target)
        os.chmod(target, 0o666)
        if uid is not None:
            os.chown(target, uid, uid)
    # Nothing but the mounts above may change under the new root.
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_bounding_set() -> None:
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            check(-1, f"dropping capability {cap}")  # EINVAL: past the last capability


def drop_capabilities() -> None:
    """Namespace root without root on the host: empty every capability set."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (ctypes.c_uint32 * 6)()
    check(libc.capset(header, data), "capset")


def child(spec: dict[str, Any]) -> None:
    os.chroot(spec["root"])
    os.chdir(spec["workdir"])
    os.setsid()
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
    drop_bounding_set()
    uid = spec["uid"]
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    else:
        drop_capabilities()
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    for name, (soft, hard) in spec["rlimits"].items():
        resource.setrlimit(RLIMITS[name], (soft, hard))
    os.execve(spec["python"], spec["argv"], spec["env"])


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        build_root(spec)
    except OSError as err:
        fail("building the private root", str(err))
    pid = os.fork()
    if pid == 0:
        try:
            child(spec)
        except OSError as err:
            fail("starting the sandboxed process", str(err))
    while True:  # pid 1 reaps every orphan; exits (killing them all) with the child
        try:
            done, status = os.wait()
        except ChildProcessError:
            os._exit(LAUNCH_FAILED)
        if done == pid:
            if os.WIFSIGNALED(status):
                os._exit(128 + os.WTERMSIG(status))
            os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
