"""hack/test-okg.sh's failure path: no OKG manager means a clear reason, not a silent skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.okg import OkgUnavailableError, locate_okg


def test_a_version_that_cannot_be_had_names_the_version_the_reason_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIDECAR_TEST_CACHE", str(tmp_path / "cache"))  # nothing cached
    monkeypatch.setenv("GOPROXY", "off")  # no network: the module cannot be downloaded
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "gomod"))
    monkeypatch.setenv("KIDECAR_OKG_RELEASE_VERSION", "v9.9.9")
    monkeypatch.delenv("KIDECAR_OKG_SOURCE_GIT", raising=False)
    builds = locate_okg(tmp_path / "work")
    assert builds.targets == {}
    with pytest.raises(OkgUnavailableError) as failure:
        builds.target("release")
    message = str(failure.value)
    assert "produced no OKG manager for 'release'" in message
    assert "no OKG manager for RELEASE (v9.9.9)" in message  # the script's log, with why
    assert "KIDECAR_OKG_SOURCE_GIT" in message  # the way round a proxy that refuses
    assert not (tmp_path / "cache" / "bin" / "okg-v9.9.9" / "manager").exists()
