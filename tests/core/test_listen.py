"""Listen addresses are parsed in one place (kidecar_core.parse_listen): the accepted forms, and a
clear error naming the config key for each kind of bad input."""

from __future__ import annotations

import pytest

from kidecar_core import FieldError, ListenAddress, loopback_only, parse_listen


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:5001", "127.0.0.1", 5001),
        (":5000", "", 5000),
        ("[::1]:9090", "::1", 9090),
        ("[fe80::1%eth0]:80", "fe80::1%eth0", 80),
        ("localhost:65535", "localhost", 65535),
        ("game-0.example.svc:1", "game-0.example.svc", 1),
    ],
)
def test_accepted_forms(text: str, host: str, port: int) -> None:
    address = parse_listen(text)
    assert address == ListenAddress(host, port)
    assert str(address) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "must not be empty: expected HOST:PORT, [IPv6]:PORT or :PORT"),
        ("127.0.0.1", "'127.0.0.1': expected HOST:PORT, [IPv6]:PORT or :PORT, e.g. 127.0.0.1:5001"),
        ("localhost", "(no port given)"),
        ("127.0.0.1:", "'127.0.0.1:': port '' is not a number"),
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("127.0.0.1:-1", "port '-1' is not a number"),
        ("127.0.0.1:\u0665\u0660", "is not a number"),  # Arabic-Indic digits, not ASCII ones
        ("127.0.0.1:0", "port 0 is not in 1-65535"),
        ("127.0.0.1:65536", "port 65536 is not in 1-65535"),
        ("::1:5000", "an IPv6 address needs brackets, e.g. [::1]:5001"),
        ("[::1:5000", "'[::1' is not an IPv6 address in brackets"),
        ("::1]:5000", "'::1]' is not an IPv6 address in brackets"),
        ("[127.0.0.1]:5000", "'[127.0.0.1]' is not an IPv6 address in brackets"),
        (" 127.0.0.1:5000", "' 127.0.0.1' is not a host name or IP address"),
        ("http://127.0.0.1:5000", "an IPv6 address needs brackets"),
        ("host_name:5000", "'host_name' is not a host name or IP address"),
    ],
)
def test_bad_input_is_an_error_naming_the_key(text: str, reason: str) -> None:
    with pytest.raises(FieldError) as caught:
        parse_listen(text, "gameApi.listen")
    assert caught.value.key == "gameApi.listen"
    assert reason in caught.value.message
    assert str(caught.value).startswith("gameApi.listen: ")


def test_port_zero_only_where_any_port_is_allowed() -> None:
    assert parse_listen("127.0.0.1:0", any_port=True) == ListenAddress("127.0.0.1", 0)
    with pytest.raises(FieldError, match="port 0 is not in 1-65535"):
        parse_listen("127.0.0.1:0")


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.3.2.1:5000", True),
        ("[::1]:5000", True),
        ("localhost:5000", True),
        (":5000", False),
        ("0.0.0.0:5000", False),
        ("[::]:5000", False),
        ("10.0.0.7:5000", False),
        ("game.example:5000", False),
        ("::1:5000", False),  # invalid: never taken for loopback
    ],
)
def test_loopback(text: str, loopback: bool) -> None:
    assert loopback_only(text) is loopback
