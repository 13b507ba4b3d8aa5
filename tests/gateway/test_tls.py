"""HTTPS end to end: a module service and the gateway serving TLS, the gateway checking
the replica's certificate against a private CA (and health-checking it over TLS)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from llmagentos._processes import free_port, start_server, stop_processes

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmagentos test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_service_behind_an_https_gateway(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    service, service_url = start_server(
        ["llmagentos", "serve", str(TAXI), *tls], scheme="https", verify=str(cert)
    )
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nupstream_ca_file = "{cert}"\nhealth_interval = 0.2\n\n'
        f'[[services]]\nname = "taxi"\nreplicas = ["{service_url}"]\n'
    )
    gateway, gateway_url = start_server(
        ["llmagentos", "gateway", str(config), *tls], scheme="https", verify=str(cert)
    )
    try:
        assert gateway_url.startswith("https://")
        reply = httpx.post(
            f"{gateway_url}/taxi/v1/perception/perceive",
            json={"session": "s", "observation": 9}, verify=trust,
        )  # fmt: skip
        assert reply.status_code == 200 and reply.json() == {"features": 9}
        with pytest.raises(httpx.ConnectError):  # an untrusted certificate is refused
            httpx.get(f"{gateway_url}/healthz")
        healthy = (
            f'llmagentos_gateway_replica_healthy{{replica="{service_url}",service="taxi"}} 1.0'
        )
        deadline = time.monotonic() + 10
        metrics = ""
        while time.monotonic() < deadline and healthy not in metrics:
            metrics = httpx.get(f"{gateway_url}/metrics", verify=trust).text
            time.sleep(0.2)
        assert healthy in metrics  # the health checks reach the replica over TLS
    finally:
        for process in (gateway, service):
            process.terminate()
            process.wait(timeout=15)


def test_a_replica_with_an_unknown_ca_is_a_failure_not_a_hang(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    service, service_url = start_server(
        ["llmagentos", "serve", str(TAXI), *tls], scheme="https", verify=str(cert)
    )
    config = tmp_path / "gateway.toml"
    config.write_text(f'[[services]]\nname = "taxi"\nreplicas = ["{service_url}"]\n')
    gateway, gateway_url = start_server(["llmagentos", "gateway", str(config)])
    try:
        reply = httpx.post(
            f"{gateway_url}/taxi/v1/perception/perceive", json={"session": "s", "observation": 1}
        )
        assert reply.status_code in (502, 503)  # no upstream_ca_file: the replica is not trusted
    finally:
        for process in (gateway, service):
            process.terminate()
            process.wait(timeout=15)


@pytest.mark.parametrize("command", ["serve", "gateway"])
def test_half_or_broken_tls_settings_fail_before_listening(tmp_path: Path, command: str) -> None:
    cert, key = _self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other_cert, _ = _self_signed(tmp_path / "other")
    config = tmp_path / "gateway.toml"
    config.write_text('[[services]]\nname = "taxi"\nreplicas = ["http://127.0.0.1:9"]\n')
    target = str(TAXI) if command == "serve" else str(config)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for extra, words in (
        (["--tls-cert", str(cert)], "both --tls-cert and --tls-key"),
        (["--tls-cert", str(other_cert), "--tls-key", str(key)], "do not load"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "llmagentos", command, target, "--port", str(free_port()),
             *extra],
            check=False, capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert done.returncode == 2 and words in done.stderr, done.stderr


def test_an_https_gateway_leaves_requests_unread_past_its_slots(tmp_path: Path) -> None:
    # Pausing a TLS connection pauses the decrypted stream, not the socket: what the
    # TLS layer already decrypted still arrives and must be kept with the request.
    import asyncio

    cert, key = _self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    upstream, upstream_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[gateway]\nmax_in_flight = 2\nqueue_timeout = 0.4\nhealth_interval = 0\n\n"
        f'[[services]]\nname = "up"\nreplicas = ["{upstream_url}"]\n'
    )
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    gateway, url = start_server(
        ["llmagentos", "gateway", str(config), *tls], scheme="https", verify=str(cert)
    )

    async def flood() -> tuple[list[int], list[str], int]:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(verify=trust, timeout=10, limits=limits) as client:
            busy = [asyncio.ensure_future(client.get(f"{url}/up/slow?s=1.5")) for _ in range(2)]
            await asyncio.sleep(0.3)
            body = b"x" * 50_000  # more than one TLS record
            refused = await asyncio.gather(
                *(client.post(f"{url}/up/echo", content=body) for _ in range(6))
            )
            served = [reply.status_code for reply in await asyncio.gather(*busy)]
            after = await client.post(f"{url}/up/echo", content=body)
            return served, [r.text for r in refused if r.status_code == 503], after.status_code

    try:
        served, refusals, after = asyncio.run(flood())
        assert served == [200, 200]
        assert len(refusals) == 6
        assert all("could read within 400 ms" in text for text in refusals)
        assert after == 200
    finally:
        stop_processes(gateway, upstream)
