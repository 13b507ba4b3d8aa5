"""check_url refuses every unsafe URL form without touching the network."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from llmagentos.exceptions import LLMAgentOSError
from llmagentos.tools.ssrf import ResolvedURL, URLRefused, check_url

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"

# The fake DNS: every name a test uses; anything else fails like NXDOMAIN.
FAKE_DNS: dict[str, list[str]] = {
    "example.com": [PUBLIC_V4],
    "v6.example.com": [PUBLIC_V6],
    "both.example.com": [PUBLIC_V4, PUBLIC_V6],
    "localhost": ["127.0.0.1", "::1"],
    "localtest.me": ["127.0.0.1"],
    "mixed.example.com": [PUBLIC_V4, "10.0.0.5"],
    "mixed6.example.com": [PUBLIC_V6, "fe80::1"],
    "rebind.example.com": ["192.168.0.10"],
    "meta.example.com": ["169.254.169.254"],
    "internal.corp": ["172.16.5.4"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
    "zero.example.com": ["0.0.0.0"],
    "cgnat.example.com": ["100.64.1.1"],
    "imds6.example.com": ["fd00:ec2::254"],
    "xn--mnchen-3ya.example": [PUBLIC_V4],
    "xn--bcher-kva.example": ["10.1.1.1"],
    "metadata.google.internal": ["169.254.169.254"],
}


def fake_resolver(host: str, port: int) -> Iterable[str]:
    try:
        return FAKE_DNS[host]
    except KeyError:
        raise OSError(f"fake NXDOMAIN for {host!r}") from None


REFUSED = [
    # loopback in every spelling
    "http://127.0.0.1",
    "http://127.0.0.1:8080/admin",
    "http://127.0.0.1./",
    "http://localhost",
    "http://LOCALHOST/",
    "http://localtest.me/",
    "http://2130706433",
    "http://0177.0.0.1",
    "http://0x7f000001",
    "http://0x7f.0.0.1",
    "http://0x7f.1",
    "http://127.1",
    "http://017700000001",
    "http://127.000.000.001",
    "http://0",
    "http://0.0.0.0",
    "http://[::1]",
    "http://[::1]:80/",
    "http://[::]",
    "http://[0:0:0:0:0:0:0:1]",
    # IPv6 carrying forbidden IPv4
    "http://[::ffff:127.0.0.1]",
    "http://[::ffff:7f00:1]",
    "http://[0:0:0:0:0:ffff:127.0.0.1]",
    "http://[::ffff:169.254.169.254]",
    "http://[::ffff:10.0.0.1]",
    "http://[::127.0.0.1]",
    "http://[64:ff9b::7f00:1]",
    "http://[2002:7f00:1::]",
    "http://[2002:a9fe:a9fe::1]",
    # private, shared, link-local, reserved, multicast, broadcast
    "http://10.0.0.1",
    "http://172.16.0.1",
    "http://172.31.255.254",
    "http://192.168.1.1",
    "http://100.64.0.1",
    "http://198.18.0.1",
    "http://192.0.0.1",
    "http://192.0.2.1",
    "http://240.0.0.1",
    "http://255.255.255.255",
    "http://224.0.0.1",
    "http://[ff02::1]",
    "http://[fe80::1]",
    "http://[fc00::1]",
    "http://[fd12:3456::1]",
    "http://[fec0::1]",
    "http://[2001:db8::1]",
    "http://169.254.0.1",
    # cloud metadata
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.169.254/computeMetadata/v1/",
    "http://[fd00:ec2::254]/latest/meta-data",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/",
    "http://100.100.100.200/latest/meta-data",
    "http://meta.example.com/",
    "http://imds6.example.com/",
    # names resolving (partly) to forbidden addresses
    "http://mixed.example.com/",
    "http://mixed6.example.com/",
    "http://rebind.example.com/",
    "http://internal.corp/",
    "http://mapped.example.com/",
    "http://zero.example.com/",
    "http://cgnat.example.com/",
    "http://xn--bcher-kva.example/",
    "http://bücher.example/",
    "http://nxdomain.invalid/",
    # userinfo and parser-confusion tricks
    "http://user:pass@127.0.0.1",
    "http://example.com@127.0.0.1",
    "http://user@example.com/",
    "http://127.0.0.1#@example.com",
    "http://127.0.0.1?@example.com",
    "http://127.0.0.1\\@example.com",
    "http://example.com\\@127.0.0.1/",
    "http://example.com%2f@127.0.0.1/",
    "http://%31%32%37.0.0.1/",
    "http://[fe80::1%25eth0]/",
    "http://127.0.0.1 /",
    "http://exa mple.com/",
    "http://example.com\t/",
    "http://example.com\n.evil/",
    "http://example.com:/",
    "http://example.com:99999/",
    "http://example.com:0/",
    "http://example.com:-1/",
    "http://[::1/",
    "http://[not-an-ip]/",
    "http://1.2.3.4.5/",
    "http://0x/",
    "http://ex_ample!.com/",
    # wrong shapes and schemes
    "http://",
    "http:///path",
    "http:/example.com",
    "http:example.com",
    "//example.com/",
    "example.com",
    "",
    "ftp://example.com",
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "gopher://127.0.0.1:25/_HELO",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "dict://127.0.0.1:11211/",
    "ws://example.com/",
    "httpx://example.com/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url: str) -> None:
    with pytest.raises(URLRefused) as info:
        check_url(url, resolver=fake_resolver)
    assert info.value.url == url
    assert info.value.reason
    assert repr(url)[:20] in str(info.value)


def test_many_forms_are_covered() -> None:
    assert len(set(REFUSED)) >= 40


def test_url_refused_is_a_library_and_value_error() -> None:
    err = URLRefused("http://x", "why")
    assert isinstance(err, LLMAgentOSError)
    assert isinstance(err, ValueError)
    assert err.reason == "why"


@pytest.mark.parametrize(
    ("url", "ip"),
    [
        ("http://example.com/", PUBLIC_V4),
        ("https://EXAMPLE.com./a?b=1", PUBLIC_V4),
        ("http://v6.example.com:8080/", PUBLIC_V6),
        ("http://93.184.216.34/", PUBLIC_V4),
        ("http://1572395042/", PUBLIC_V4),  # decimal form of a public address
        ("http://[2606:2800:220:1:248:1893:25c8:1946]/", PUBLIC_V6),
        ("http://8.8.8.8/", "8.8.8.8"),
        ("http://münchen.example/", PUBLIC_V4),
    ],
)
def test_public_addresses_pass(url: str, ip: str) -> None:
    resolved = check_url(url, resolver=fake_resolver)
    assert isinstance(resolved, ResolvedURL)
    assert resolved.ip == ip


def test_resolved_url_pins_ip_and_keeps_host() -> None:
    resolved = check_url("https://Example.com:8443/p/q?x=1#frag", resolver=fake_resolver)
    assert resolved.scheme == "https"
    assert resolved.host == "example.com"
    assert resolved.port == 8443
    assert resolved.target == "/p/q?x=1"
    assert resolved.pinned_url == f"https://{PUBLIC_V4}:8443/p/q?x=1"
    assert resolved.host_header == "example.com:8443"
    default = check_url("http://example.com", resolver=fake_resolver)
    assert default.host_header == "example.com"
    assert default.pinned_url == f"http://{PUBLIC_V4}:80/"
    v6 = check_url("http://v6.example.com/", resolver=fake_resolver)
    assert v6.pinned_url == f"http://[{PUBLIC_V6}]:80/"


def test_all_addresses_checked_and_returned() -> None:
    resolved = check_url("http://both.example.com/", resolver=fake_resolver)
    assert resolved.addresses == (PUBLIC_V4, PUBLIC_V6)


def test_legacy_forms_normalised() -> None:
    allowed = check_url("http://0x7f.1:9/", allow_private=True, resolver=fake_resolver)
    assert allowed.ip == "127.0.0.1"
    assert allowed.host == "127.0.0.1"


def test_allow_private_opens_loopback_but_not_metadata() -> None:
    assert check_url("http://127.0.0.1:8000/", allow_private=True).ip == "127.0.0.1"
    assert check_url("http://localhost/", allow_private=True, resolver=fake_resolver).addresses
    assert check_url("http://[::1]/", allow_private=True).ip == "::1"
    for url in (
        "http://169.254.169.254/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/",
        "http://meta.example.com/",
    ):
        with pytest.raises(URLRefused, match="metadata"):
            check_url(url, allow_private=True, resolver=fake_resolver)


def test_allow_hosts_by_name_ip_and_network() -> None:
    assert check_url("http://127.0.0.1/", allow_hosts={"127.0.0.1"}).ip == "127.0.0.1"
    assert check_url("http://localhost/", allow_hosts=["LOCALHOST"], resolver=fake_resolver)
    assert check_url("http://10.0.0.9/", allow_hosts=["10.0.0.0/8"]).ip == "10.0.0.9"
    assert check_url("http://169.254.169.254/", allow_hosts=["169.254.169.254"])
    assert check_url(
        "http://metadata.google.internal/",
        allow_hosts=["metadata.google.internal"],
        resolver=fake_resolver,
    )
    # allowing one address does not allow its neighbours
    with pytest.raises(URLRefused):
        check_url("http://127.0.0.2/", allow_hosts={"127.0.0.1"})
    # a name allowed by IP must resolve only to allowed addresses
    with pytest.raises(URLRefused):
        check_url("http://mixed.example.com/", allow_hosts={"10.0.0.6"}, resolver=fake_resolver)


def test_resolver_is_called_with_host_and_port() -> None:
    calls: list[tuple[str, int]] = []

    def recording(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return [PUBLIC_V4]

    check_url("https://Some.Name.example./x", resolver=recording)
    assert calls == [("some.name.example", 443)]


def test_ip_literals_never_resolve() -> None:
    def exploding(host: str, port: int) -> list[str]:
        raise AssertionError("resolver must not be called for IP literals")

    with pytest.raises(URLRefused):
        check_url("http://2130706433/", resolver=exploding)
    assert check_url("http://8.8.8.8/", resolver=exploding).ip == "8.8.8.8"
