"""Config values and files that passed ``check-config`` and then stopped ``kidecar run`` with a
traceback, or hung it (review of issue 12). Each is a real ``kidecar`` process: exit code 2, every
problem with its path, no traceback, and no wait (a hang fails on the subprocess timeout).

* a NUL character in a string (``fileDir: "/a\\0b"``, ``tokenFile``): ``os`` calls raise
  ``ValueError: embedded null byte``;
* an ``allowedUrlPrefixes`` entry that is not a URL yarl can parse (a port out of range, an
  unclosed IPv6 literal), and every bad entry reported, not just the first;
* the config file or the token file a FIFO (reading it blocked forever, SIGTERM included), a
  directory or a device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "POD_NAME": "gs-0", "POD_NAMESPACE": "default"}


def kidecar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kidecar_core", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )


def hot_update(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "plugins:\n  - name: hot_update\n    config:\n      signal: {processName: game}\n"
        f"      listen: 127.0.0.1:1\n{extra}"
    )
    return path


def run(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return kidecar(
        "run", "--config", str(config), "--local-state", str(tmp_path / "state.json"),
        "--admin-listen", "127.0.0.1:0",
    )  # fmt: skip


def assert_refused(out: subprocess.CompletedProcess[str], *messages: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    for message in messages:
        assert message in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('      fileDir: "/tmp/a\\0b"\n', "config.fileDir: must not contain a NUL character"),
        (
            '      auth: {tokenFile: "/tmp/a\\0b"}\n',
            "config.auth.tokenFile: must not contain a NUL character",
        ),
    ],
)
def test_a_nul_character_in_a_string_is_a_config_error(
    tmp_path: Path, extra: str, message: str
) -> None:
    config = hot_update(tmp_path, extra)
    assert_refused(kidecar("check-config", str(config)), message)
    assert_refused(run(tmp_path, config), message)


def test_every_bad_url_prefix_is_reported_and_none_stops_run(tmp_path: Path) -> None:
    config = hot_update(
        tmp_path,
        '      allowedUrlPrefixes: ["not a url", "http://[::1", "http://h:99999/",\n'
        '        "http://u:pw@h/x?sig=S3CRET", "https://cdn.example.com/game"]\n'
        "      fileDir: relative\n",
    )
    messages = (
        "5 problems",
        "allowedUrlPrefixes[0]: 'not a url' must be an http:// or https:// URL",
        "allowedUrlPrefixes[1]: 'http://[::1' is not a valid URL",
        "allowedUrlPrefixes[2]: 'http://h:99999/' is not a valid URL: Port out of range",
        "allowedUrlPrefixes[3]: 'http://h/x': a prefix has no userinfo and no query string",
        "fileDir: 'relative' must be an absolute path",
    )
    out = kidecar("check-config", str(config))
    assert_refused(out, *messages)
    assert "S3CRET" not in out.stderr and "pw@" not in out.stderr
    assert_refused(run(tmp_path, config), *messages)


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_config_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "config.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # nobody ever writes to it
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    message = f"cannot read {path}: not a regular file"
    assert_refused(kidecar("check-config", str(path)), message)
    assert_refused(run(tmp_path, path), message)


def test_a_token_file_that_is_a_fifo_is_refused_unread(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    config = hot_update(
        tmp_path, f"      fileDir: {tmp_path / 'downloads'}\n      auth: {{tokenFile: {fifo}}}\n"
    )
    assert_refused(
        run(tmp_path, config), f"config.auth.tokenFile: cannot read {fifo}: not a regular file"
    )


def test_a_symlinked_config_still_loads(tmp_path: Path) -> None:
    """A mounted ConfigMap is a symlink to a regular file: that is fine."""
    real = hot_update(tmp_path, f"      fileDir: {tmp_path / 'downloads'}\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    out = kidecar("check-config", str(link))
    assert out.returncode == 0, out.stderr
