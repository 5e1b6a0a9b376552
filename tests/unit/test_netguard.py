"""The SSRF guard refuses schemes and addresses a service must never reach."""

import pytest

from scribe_runtime.netguard import (
    ForbiddenUrlError,
    is_public_address,
    parse_remote_url,
    resolve_public_url,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "100.64.0.1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/a.wav", "gopher://x", "http://user:pw@example.com/"],
)
def test_schemes_and_credentials_are_refused(url: str) -> None:
    with pytest.raises(ForbiddenUrlError):
        parse_remote_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.wav",
        "http://localhost:8000/a.wav",
        "http://[::1]/a.wav",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/a.wav",
    ],
)
async def test_loopback_private_and_metadata_hosts_are_refused(url: str) -> None:
    with pytest.raises(ForbiddenUrlError, match="non-public"):
        await resolve_public_url(url)


async def test_an_allow_listed_host_may_be_private_and_others_stay_refused() -> None:
    from scribe_runtime.netguard import resolve_allowed_url

    resolved = await resolve_allowed_url("http://127.0.0.1:9/hook", frozenset({"127.0.0.1"}))
    assert resolved.addresses == ("127.0.0.1",)
    with pytest.raises(ForbiddenUrlError):
        await resolve_allowed_url("http://10.0.0.1/hook", frozenset({"127.0.0.1"}))
    with pytest.raises(ForbiddenUrlError):
        await resolve_allowed_url("file:///etc/passwd", frozenset({"127.0.0.1"}))
