"""URL checks, file names, the address policy and request validation (fast unit tests)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from yarl import URL

from kidecar_core import redact_url as redact
from kidecar_plugins.hot_update.api import parse_sha256, parse_version
from kidecar_plugins.hot_update.auth import TokenSource
from kidecar_plugins.hot_update.config import AuthConfig
from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.urls import (
    AddressRefusedError,
    GuardedResolver,
    UrlPolicy,
    file_name,
    parse_url,
    path_readings,
    refused_address,
)


@pytest.mark.parametrize(
    "version",
    [
        "v1",
        "v1.2",
        "v1.2.3",
        "1.2.3",
        "v1.2.3-rc.1",
        "v1.2.3-alpha-2.x",
        "v2.0.0+build.5",
        "v1.0.0-beta+exp.sha.5114f85",
        "v2024.01.15",
        "v1.2.3.4",
        "v2024.01.15.1",
        "v1.2.3.4.5.6",
        "v0001.02",
    ],
)
def test_valid_versions(version: str) -> None:
    assert parse_version(version) == version


@pytest.mark.parametrize(
    "version",
    [
        "",
        "latest",
        "v",
        "v1.2.3.",
        "v1..2",
        "v1.2.3-",
        "v1.2.3-rc..1",
        "v1 2",
        "v1/2",
        "v1: Update success",
        "V1",
        "-v1",
        "v1.2.3+",
        "v1" + "0" * 200,
    ],
)
def test_invalid_versions(version: str) -> None:
    with pytest.raises(UpdateError) as e:
        parse_version(version)
    assert e.value.status == 400


def test_sha256_accepts_hex_any_case_and_prefix() -> None:
    digest = "ab" * 32
    assert parse_sha256(digest.upper()) == digest
    assert parse_sha256(f"sha256:{digest}") == digest
    assert parse_sha256("") is None
    for bad in ("ab" * 31, "zz" * 32, "md5:" + digest):
        with pytest.raises(UpdateError):
            parse_sha256(bad)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://host/v2/index.html", "index.html"),
        ("https://host:8443/a/b/config.json?sig=abc#x", "config.json"),
        ("http://host/a/../b/file.txt", "file.txt"),
        ("http://host/files/with%20space.txt", "with space.txt"),
    ],
)
def test_file_name_is_the_base_name_of_the_url(url: str, name: str) -> None:
    assert file_name(parse_url(url)) == name


@pytest.mark.parametrize(
    "url",
    [
        "http://host/",
        "http://host",
        "http://host/a/..",
        "http://host/a%2Fb",
        "http://host/..%2F..%2Fetc%2Fpasswd",
        "http://host/a%5Cb",
        "http://host/%00",
        "http://host/.index.html.123.kidecar-tmp",
        "http://host/" + "a" * 300,
    ],
)
def test_unsafe_file_names_are_refused(url: str) -> None:
    with pytest.raises(UpdateError) as e:
        file_name(parse_url(url))
    assert e.value.status == 400


@pytest.mark.parametrize(
    "url", ["ftp://host/x", "file:///etc/passwd", "gopher://h/x", "host/x", "http:///x", "//h/x"]
)
def test_only_absolute_http_urls(url: str) -> None:
    with pytest.raises(UpdateError) as e:
        parse_url(url)
    assert e.value.status == 400


def test_redact_drops_userinfo_and_query() -> None:
    assert redact("https://user:pw@cdn/x.zip?Signature=SECRET&Expires=1#frag") == (
        "https://cdn/x.zip"
    )


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("169.254.169.254", True),
        ("169.254.0.23", True),
        ("100.100.100.200", True),
        ("100.96.0.96", True),
        ("fd00:ec2::254", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("::ffff:169.254.169.254", True),
        ("127.0.0.1", False),
        ("10.0.0.8", False),
        ("192.168.1.1", False),
        ("8.8.8.8", False),
        ("::1", False),
        ("not-an-ip", False),
    ],
)
def test_refused_addresses(address: str, refused: bool) -> None:
    assert (refused_address(address) is not None) is refused


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cdn.example.com/game/v2/index.html", True),
        ("https://CDN.example.com/game/x", True),
        ("https://cdn.example.com:443/game/x", True),
        ("https://cdn.example.com/game", False),
        ("https://cdn.example.com/gameX/x", False),
        ("http://cdn.example.com/game/x", False),
        ("https://cdn.example.com:8443/game/x", False),
        ("https://cdn.example.com.attacker.net/game/x", False),
        ("https://attacker.net/cdn.example.com/game/x", False),
        ("https://cdn.example.com/game/../admin/x", False),
        ("https://cdn.example.com/game/%2e%2e/admin/x", False),
        ("http://10.0.0.5/files/a", True),
    ],
)
def test_allowed_url_prefixes(url: str, allowed: bool) -> None:
    policy = UrlPolicy.from_config(
        ["https://cdn.example.com/game/", "http://10.0.0.5/files/"], False
    )
    if allowed:
        policy.check(parse_url(url))
    else:
        with pytest.raises(UpdateError) as e:
            policy.check(parse_url(url))
        assert e.value.status == 403


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/game", True), ("/game/v2.pak", True), ("/gamehack/x", False), ("/gam", False)],
)
def test_a_prefix_without_a_trailing_slash_ends_at_a_path_boundary(
    path: str, allowed: bool
) -> None:
    policy = UrlPolicy.from_config(["https://cdn.example.com/game"], False)
    url = parse_url(f"https://cdn.example.com{path}")
    if allowed:
        policy.check(url)
    else:
        with pytest.raises(UpdateError):
            policy.check(url)


def test_link_local_policy_and_its_opt_in() -> None:
    url = URL("http://169.254.169.254/latest/meta-data")
    with pytest.raises(UpdateError) as e:
        UrlPolicy().check(url)
    assert e.value.status == 403 and "allowLinkLocal" in e.value.message
    UrlPolicy(allow_link_local=True).check(url)


class FakeResolver:
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> Any:
        return [{"hostname": host, "host": a, "port": port, "family": family, "proto": 0,
                 "flags": 0} for a in self.addresses]  # fmt: skip

    async def close(self) -> None:
        return None


def resolve_with(allow: bool, *addresses: str) -> list[str]:
    async def main() -> list[str]:
        resolver = GuardedResolver(allow)
        resolver._inner = FakeResolver(*addresses)  # type: ignore[assignment]
        return [r["host"] for r in await resolver.resolve("files.example", 80)]

    return asyncio.run(main())


def test_resolver_drops_refused_addresses() -> None:
    assert resolve_with(False, "169.254.169.254", "10.1.2.3") == ["10.1.2.3"]
    assert resolve_with(True, "169.254.169.254") == ["169.254.169.254"]
    with pytest.raises(AddressRefusedError, match=r"metadata|link-local"):
        resolve_with(False, "169.254.169.254")


def test_token_checks() -> None:
    tokens = TokenSource(AuthConfig(token_env="T"), env={"T": "right"})
    tokens.load()
    tokens.check("Bearer right")
    tokens.check("bearer   right")
    for header, status in (
        (None, 401),
        ("", 401),
        ("Basic right", 401),
        ("Bearer", 401),
        ("Bearer wrong", 403),
        ("Bearer righ", 403),
        ("Bearer rightt", 403),
    ):
        with pytest.raises(UpdateError) as e:
            tokens.check(header)
        assert e.value.status == status, header
    TokenSource(AuthConfig()).check(None)  # no token configured: nothing to check


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://10.0.0.5/good/..%2fevil/x", False),
        ("http://10.0.0.5/good/..%2Fevil/x", False),
        ("http://10.0.0.5/good/%2e%2e/evil/x", False),
        ("http://10.0.0.5/good/..%5cevil/x", False),
        ("http://10.0.0.5/good/..\\evil/x", False),
        ("http://10.0.0.5/good/%252e%252e%252fevil/x", False),
        ("http://10.0.0.5/good/%25252e%25252e%25252fevil/x", False),
        ("http://10.0.0.5/good/..;/evil/x", False),
        ("http://10.0.0.5/good;x=1/../evil/x", False),
        ("http://10.0.0.5/good%2f..%2fevil/x", False),
        ("http://10.0.0.5/goodies/x", False),
        ("http://10.0.0.5/good/x", True),
        ("http://10.0.0.5/good/a/../x", True),
        ("http://10.0.0.5/good/%61/x", True),
        ("http://10.0.0.5/good/a;v=2/x", True),
        ("http://10.0.0.5/good/a%2fb/x", True),
        ("http://10.0.0.5/good/with%20space/x", True),
    ],
)
def test_the_prefix_holds_on_every_reading_of_the_path(url: str, allowed: bool) -> None:
    policy = UrlPolicy.from_config(["http://10.0.0.5/good"], False)
    if allowed:
        policy.check(parse_url(url))
    else:
        with pytest.raises(UpdateError) as e:
            policy.check(parse_url(url))
        assert e.value.status == 403


def test_a_prefix_with_an_encoded_character_matches_both_spellings() -> None:
    policy = UrlPolicy.from_config(["http://h/my%20files/"], False)
    policy.check(parse_url("http://h/my%20files/x"))
    policy.check(parse_url("http://h/my files/x"))
    with pytest.raises(UpdateError):
        policy.check(parse_url("http://h/my%20files/..%2fother/x"))


def test_path_readings() -> None:
    assert path_readings("/good/..%2fevil/x") == ["/good/..%2fevil/x", "/evil/x"]
    assert path_readings("/a/..;/b") == ["/a/..;/b", "/b"]
    assert path_readings("/a%252fb") == ["/a%252fb", "/a%2fb", "/a/b"]
    assert path_readings("//a//b/") == ["/a/b/"]


def test_control_characters_anywhere_in_the_path_are_refused() -> None:
    for url in ("http://h/a%00/x", "http://h/a%250a/x", "http://h/a%7f/x"):
        with pytest.raises(UpdateError) as e:
            parse_url(url)
        assert e.value.status == 400


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.5/good/%c0%ae%c0%ae/evil/x", "http://10.0.0.5/good/%25C0%25AE%25c0%25ae/evil/x",
     "http://10.0.0.5/good/%c1%9c../evil/x"],
)  # fmt: skip
def test_overlong_utf8_dots_cannot_escape_a_prefix(url: str) -> None:
    """Review of issue 12: ``%C0%AE`` is ``.`` to servers that decode overlong UTF-8 (Tomcat,
    CVE-2008-2938); it passed the policy. The POST is a 400, a redirect there a 403."""
    with pytest.raises(UpdateError) as refused:
        parse_url(url)
    assert refused.value.status == 400 and "overlong UTF-8" in refused.value.message
    policy = UrlPolicy.from_config(["http://10.0.0.5/good"], False)
    with pytest.raises(UpdateError) as redirect:
        policy.check(URL(url, encoded=True), "redirect to")
    assert redirect.value.status == 403
