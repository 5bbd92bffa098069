"""Every failure of the hot-update plugin raises the UpdateError subclass that says what failed
(issue 10): the class names the kind, the status and reason stay what the API answers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kidecar_plugins.hot_update import errors
from kidecar_plugins.hot_update.errors import (
    BadRequest,
    DownloadFailed,
    Forbidden,
    InternalError,
    RequestTimeout,
    Unauthorized,
    UpdateError,
    UrlNotAllowed,
)

PLUGIN = Path(errors.__file__).parent


def base_class_constructions(package: Path) -> list[str]:
    """``name:line`` of every ``UpdateError(...)`` call under ``package`` outside errors.py."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "UpdateError"
            ):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_failure_raises_the_base_class() -> None:
    assert base_class_constructions(PLUGIN) == []


def test_the_scan_finds_a_base_class_construction(tmp_path: Path) -> None:
    (tmp_path / "api.py").write_text('x = 1\nraise UpdateError(500, "x", "y")\n')
    (tmp_path / "errors.py").write_text('UpdateError(500, "x", "y")\n')
    assert base_class_constructions(tmp_path) == ["api.py:2"]


@pytest.mark.parametrize(
    ("error", "status", "reason", "label"),
    [
        (Unauthorized("missing bearer token"), 401, "unauthorized", "unauthorized"),
        (Forbidden("forbidden", "invalid bearer token"), 403, "forbidden", "forbidden"),
        (UrlNotAllowed("'ftp://h/f' is not http"), 403, "url not allowed", "forbidden"),
        (RequestTimeout("no body within 10s"), 408, "request timeout", "bad_request"),
        (InternalError("cannot read file", "cannot read /x"), 500, "cannot read file", "error"),
    ],
)
def test_subclasses_keep_status_reason_and_label(
    error: UpdateError, status: int, reason: str, label: str
) -> None:
    assert isinstance(error, UpdateError)
    assert (error.status, error.reason, error.label) == (status, reason, label)


def test_url_not_allowed_is_a_forbidden() -> None:
    assert isinstance(UrlNotAllowed("no"), Forbidden)


def test_with_message_keeps_the_class_status_and_reason() -> None:
    error = DownloadFailed("download failed: HTTP 403", "download of http://h/f failed")
    again = error.with_message("download of http://h/f failed (send the update again)")
    assert type(again) is DownloadFailed
    assert (again.status, again.reason) == (502, "download failed: HTTP 403")
    assert again.message == str(again) == "download of http://h/f failed (send the update again)"
    assert not isinstance(BadRequest("bad request", "x").with_message("y"), DownloadFailed)
