# ruff: noqa: E501  (payload and fixture source lines read best unbroken)
"""The escape corpus: each payload tries to break out; none may succeed.

A payload prints ``ESCAPED`` only if its attack worked; independently, the secret
(in the environment and in files outside the workdir) must never show up in the
output, the loopback and abstract-socket canaries must see no connection, the host
sleeper must survive and no host file may be written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmagentos.exceptions import SandboxUnavailable
from llmagentos.sandbox import Sandbox, SandboxLimits

REPO = Path(__file__).resolve().parents[2]
SECRET = "llmagentos-canary-" + secrets.token_hex(12)
PWNED = "llmagentos_sandbox_pwned.txt"


class Canary:
    """A TCP server that counts connections (IPv4 and IPv6 loopback, abstract unix)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.servers: list[socket.socket] = []
        v4 = socket.create_server(("127.0.0.1", 0))
        self.port = v4.getsockname()[1]
        self.servers.append(v4)
        with contextlib.suppress(OSError):  # no IPv6 on this host
            self.servers.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        self.abstract = "\0llmagentos-canary-" + secrets.token_hex(6)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(self.abstract)
        unix.listen()
        self.servers.append(unix)
        self.stop = False
        for server in self.servers:
            server.settimeout(0.2)
            threading.Thread(target=self._serve, args=(server,), daemon=True).start()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while not self.stop:
            try:
                self.udp.recv(64)
            except OSError:
                continue
            self.accepted += 1

    def _serve(self, server: socket.socket) -> None:
        while not self.stop:
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stop = True
        self.udp.close()
        for server in self.servers:
            server.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    folder = tmp_path_factory.mktemp("secrets")
    private = folder / "secret_0600.txt"
    private.write_text(SECRET)
    private.chmod(0o600)
    public = folder / "secret_0644.txt"
    public.write_text(SECRET)
    public.chmod(0o644)
    in_tmp = Path("/tmp") / f"llmagentos-canary-{secrets.token_hex(6)}.txt"
    in_tmp.write_text(SECRET)
    in_tmp.chmod(0o644)
    old = os.environ.get("LLMAGENTOS_SANDBOX_SECRET")
    os.environ["LLMAGENTOS_SANDBOX_SECRET"] = SECRET
    canary = Canary()
    sleeper = subprocess.Popen(["sleep", "300"])
    hostname = socket.gethostname()
    try:
        yield {
            "private": str(private),
            "public": str(public),
            "in_tmp": str(in_tmp),
            "port": canary.port,
            "abstract": canary.abstract,
            "canary": canary,
            "sleeper": sleeper,
            "hostname": hostname,
        }
    finally:
        canary.close()
        sleeper.kill()
        sleeper.wait()
        in_tmp.unlink()
        if old is None:
            os.environ.pop("LLMAGENTOS_SANDBOX_SECRET", None)
        else:
            os.environ["LLMAGENTOS_SANDBOX_SECRET"] = old


LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
TRY = "def attempt(f):\n    try:\n        return f()\n    except BaseException as e:\n        return e\n"

# name -> code; formatted with the world's paths and ports.
PAYLOADS: dict[str, str] = {
    "env_secret": "import os\nif os.environ.get('LLMAGENTOS_SANDBOX_SECRET'): print('ESCAPED')",
    "env_dump": "import os\nprint(dict(os.environ))",
    "proc1_environ": "print(open('/proc/1/environ').read())",
    "all_proc_environ": (
        "import os\nfor p in os.listdir('/proc'):\n    try: print(open(f'/proc/{p}/environ').read())\n"
        "    except Exception as e: print(e)"
    ),
    "read_secret_0600": "print(open({private!r}).read()); print('ESCAPED')",
    "read_secret_0644": "print(open({public!r}).read()); print('ESCAPED')",
    "read_tmp_canary": "print(open({in_tmp!r}).read()); print('ESCAPED')",
    "read_shadow": "print(open('/etc/shadow').read()); print('ESCAPED')",
    "read_root_home": "import os\nprint(os.listdir('/root/.ssh')); print('ESCAPED')",
    "read_repo": f"print(open({str(REPO / 'pyproject.toml')!r}).read()); print('ESCAPED')",
    "proc1_root": "print(open('/proc/1/root' + {public!r}).read()); print('ESCAPED')",
    "symlink_out": "import os\nos.symlink({public!r}, 'link')\nprint(open('link').read())",
    "hardlink_out": "import os\nos.link({public!r}, 'hl')\nprint(open('hl').read())",
    "write_repo": f"open({str(REPO / PWNED)!r}, 'w').write('x'); print('ESCAPED')",
    "write_usr": "open('/usr/pwned', 'w').write('x'); print('ESCAPED')",
    "write_python_prefix": (
        "import sys\nopen(sys.base_prefix + '/pwned', 'w').write('x'); print('ESCAPED')"
    ),
    "write_proc_sys": ("open('/proc/sys/kernel/hostname', 'w').write('pwned'); print('ESCAPED')"),
    "tcp_loopback": (
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "print('ESCAPED')"
    ),
    "tcp_ipv6_loopback": (
        "import socket\ns = socket.create_connection(('::1', {port}), timeout=2)\nprint('ESCAPED')"
    ),
    "tcp_external": (
        "import socket\ns = socket.create_connection(('1.1.1.1', 53), timeout=2)\nprint('ESCAPED')"
    ),
    "udp_loopback": (
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for _ in range(3): s.sendto(b'x', ('127.0.0.1', {port}))"
    ),
    "abstract_unix": (
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({abstract!r}); print('ESCAPED')"
    ),
    "dns_lookup": "import socket\nprint(socket.getaddrinfo('example.com', 80)); print('ESCAPED')",
    "subprocess_curl": (
        "import subprocess\nr = subprocess.run(['curl', '-s', '-m', '2', "
        "'http://127.0.0.1:{port}/'])\nif r.returncode == 0: print('ESCAPED')"
    ),
    "bash_dev_tcp": (
        "import subprocess\nr = subprocess.run(['bash', '-c', 'echo x > /dev/tcp/127.0.0.1/{port}'])"
        "\nif r.returncode == 0: print('ESCAPED')"
    ),
    "os_system_cat": "import os\nos.system('cat {public} {private}; env')",
    "ping": (
        "import subprocess\nr = subprocess.run(['ping', '-c', '1', '-W', '1', '127.0.0.1'])\n"
        "if r.returncode == 0: print('ESCAPED')"
    ),
    "ctypes_setuid0": LIBC + "if libc.setuid(0) == 0: print('ESCAPED')",
    "ctypes_unshare_user": (
        LIBC + "if libc.unshare(0x10000000 | 0x00020000 | 0x40000000) == 0: print('ESCAPED')"
    ),
    "ctypes_mount": LIBC
    + "if libc.mount(b'tmpfs', b'/usr', b'tmpfs', 0, None) == 0: print('ESCAPED')",
    "ctypes_ptrace_pid1": LIBC + "if libc.ptrace(16, 1, 0, 0) == 0: print('ESCAPED')",
    "os_setuid0": "import os\nos.setuid(0); print('ESCAPED')",
    "chroot_escape": "import os\nos.mkdir('x'); os.chroot('x'); print('ESCAPED')",
    "kill_everything": (
        "import os, signal\nfor pid in (-1, {sleeper_pid}):\n    try: os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as e: print(e)"
    ),
    "subclasses_to_os_system": (
        "for c in ().__class__.__base__.__subclasses__():\n"
        "    if c.__name__ == '_wrap_close':\n"
        "        c.__init__.__globals__['system']('cat {public} {private}')\n"
    ),
    "getattr_import_subprocess": (
        "sp = getattr(__builtins__, '__import__')('subprocess')\n"
        "r = sp.run(['cat', {public!r}], capture_output=True)\nprint(r.stdout, r.stderr)"
    ),
    "dev_mem_and_disks": (
        TRY
        + "import os\nfor d in ('/dev/mem', '/dev/kmem', '/dev/sda', '/dev/vda', '/dev/kmsg'):\n"
        "    r = attempt(lambda: open(d, 'rb').read(16))\n"
        "    if isinstance(r, bytes): print('ESCAPED', d)"
    ),
    "sys_fs": "import os\nprint(os.listdir('/sys')); print('ESCAPED')",
    "setuid_binary_su": (
        "import subprocess\nr = subprocess.run(['su', '-c', 'id -u'], capture_output=True, text=True)"
        "\nif r.stdout.strip() == '0': print('ESCAPED')"
    ),
    "hostname_change": (
        LIBC + "if libc.sethostname(b'pwned', 5) == 0: print('sandbox hostname only')"
    ),
}


def _fill(code: str, values: dict[str, object]) -> str:
    """``{name}`` and ``{name!r}`` placeholders (payloads keep their own braces)."""
    for key, value in values.items():
        code = code.replace("{" + key + "!r}", repr(value)).replace("{" + key + "}", str(value))
    return code


def _sandbox(backend: str) -> Sandbox:
    try:
        return Sandbox(SandboxLimits(cpu_seconds=5, wall_seconds=10), backend=backend)
    except SandboxUnavailable as err:
        pytest.skip(f"{backend} backend unavailable here: {err}")


@pytest.fixture(scope="module", params=["bwrap", "unshare"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    return _sandbox(request.param)


def test_corpus_is_big_enough() -> None:
    assert len(PAYLOADS) >= 30


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_does_not_escape(sandbox: Sandbox, world: dict[str, object], name: str) -> None:
    canary = world["canary"]
    assert isinstance(canary, Canary)
    before = canary.accepted
    sleeper = world["sleeper"]
    assert isinstance(sleeper, subprocess.Popen)
    code = _fill(PAYLOADS[name], {**world, "sleeper_pid": sleeper.pid})
    result = sandbox.run_python(code)
    output = result.stdout + result.stderr
    assert "ESCAPED" not in result.stdout, output
    assert SECRET not in output
    assert canary.accepted == before
    assert sleeper.poll() is None, "the host sleeper was killed"
    assert not (REPO / PWNED).exists()
    assert not Path(sys.base_prefix, "pwned").exists()
    assert socket.gethostname() == world["hostname"]
    assert result.backend == sandbox.backend
