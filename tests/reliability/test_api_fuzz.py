"""schemathesis fuzzes the sidecar's HTTP APIs, from the OpenAPI documents shipped in the package.

One real ``kidecar run --local-state`` subprocess with ``hot_update`` (bearer token configured,
``allowedUrlPrefixes`` pointing at a local file server, so no fuzzed URL can leave 127.0.0.1) and
a real game process that reloads on SIGHUP. schemathesis generates valid and invalid requests
for every documented operation (examples, coverage and fuzzing phases) and checks each answer:
no 5xx but the documented 502/503 of a failed update, every status, content type, header and
body as documented, auth enforced. A share of the generated ``POST`` requests get their ``url``
replaced by a real file on the local server, so that downloads, checksum mismatches and
successful updates happen too, and by the hostile inputs of issue 12: a path that escapes
``allowedUrlPrefixes`` once decoded, a ``206`` answer, a presigned URL whose signature must never
be shown or stored.

After every request: no temporary file in ``fileDir`` and the file there byte-identical to the
last version answered with 200 (absent before the first). At the end: the sidecar is alive,
``GET /hot-update`` names that version and the game has loaded it.

The game API (``game_api``, bearer token configured) is fuzzed against a second sidecar: every
schema-valid request must be accepted (202), every invalid one refused with a documented 4xx.
At the end the GameServer in the state file holds exactly what the accepted requests queued,
newest last (the watch stream is tested elsewhere: it never ends by itself).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import secrets
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from kidecar_core.testing import Sidecar, free_port
from tests.plugins.hot_update.harness import Api, Game, hot_update_config
from tests.reliability.faultserver import FaultyFileServer, versioned_content

TOKEN = secrets.token_urlsafe(24)
SECRET = "FuzzSignature" + secrets.token_hex(8)
FILE = "game.pak"
TEMPORARY = (".kidecar-tmp", ".kidecar-prev")
MAX_BYTES = 64 * 1024
MAX_EXAMPLES = int(os.environ.get("KIDECAR_FUZZ_EXAMPLES", "800"))
"""Per operation in the fuzzing phase (``KIDECAR_FUZZ_EXAMPLES`` to explore deeper locally, with
another ``seed``); 1500 made the module take 110 s on a loaded machine, 800 about half of that."""


def fuzz_config(
    *,
    expected_5xx: list[str],
    bearer: str | None = None,
    positive_acceptance: bool = False,
    max_examples: int = MAX_EXAMPLES,
) -> SchemathesisConfig:
    auth = {"auth": {"openapi": {"bearerAuth": {"bearer": bearer}}}} if bearer else {}
    return SchemathesisConfig.from_dict(
        {
            **auth,
            "seed": 20250131,  # reproducible in CI; change it locally to explore
            "generation": {"max-examples": max_examples, "mode": "all"},
            "checks": {
                "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", *expected_5xx]},
                # hot_update: `version` and `url` may come from the query or the body, but must
                # be given once (or twice alike): OpenAPI cannot say that, so a schema-valid
                # request can get the documented 400. Invalid requests must still be rejected.
                "positive_data_acceptance": {"enabled": positive_acceptance},
            },
            "request-timeout": 30,
        }
    )


HOT_UPDATE_DOC = importlib.resources.files("kidecar_plugins.hot_update") / "openapi.yaml"
ADMIN_DOC = importlib.resources.files("kidecar_core._runtime") / "openapi.yaml"
hot_update_schema = schemathesis.openapi.from_path(
    str(HOT_UPDATE_DOC), config=fuzz_config(expected_5xx=["502", "503"], bearer=TOKEN)
)
admin_schema = schemathesis.openapi.from_path(
    str(ADMIN_DOC), config=fuzz_config(expected_5xx=["503"])
)
GAME_API_DOC = importlib.resources.files("kidecar_plugins.game_api") / "openapi.yaml"
GAME_TOKEN = secrets.token_urlsafe(24)
GAME_API_EXAMPLES = 500
"""Per operation: every request is cheap, the writes are coalesced."""
game_api_schema = schemathesis.openapi.from_path(
    str(GAME_API_DOC),
    config=fuzz_config(
        expected_5xx=[],
        bearer=GAME_TOKEN,
        positive_acceptance=True,
        max_examples=GAME_API_EXAMPLES,
    ),
).exclude(path="/v1/gameserver/watch")


@attrs.define
class Target:
    """The running sidecar under fuzzing and what the test knows it applied."""

    sidecar: Sidecar
    game: Game
    files: FaultyFileServer
    file_dir: Path
    hot_update_url: str
    applied: bytes | None = None
    applied_version: str | None = None
    rewrites: int = 0
    outcomes: dict[int, int] = attrs.field(factory=dict)

    def check_file_dir(self) -> None:
        """No temporary file left; the file is the last applied version (absent before)."""
        names = sorted(p.name for p in self.file_dir.iterdir())
        assert not [n for n in names if n.endswith(TEMPORARY)], names
        target = self.file_dir / FILE
        if self.applied is None:
            assert not target.exists(), names
        else:
            assert target.read_bytes() == self.applied


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp("fuzz")
    file_dir = workdir / "downloads"
    file_dir.mkdir()
    files = FaultyFileServer().start()
    files.add(FILE, versioned_content(FILE, "dropped"))
    game = Game(workdir, file_dir / FILE).start()
    port = free_port()
    config = hot_update_config(
        file_dir,
        port,
        process_name=game.title,
        auth={"tokenEnv": "HOT_UPDATE_TOKEN"},
        allowedUrlPrefixes=[
            files.url(p) for p in ("/v/", "/drop/", "/status/", "/big", "/partial/")
        ],
        maxBytes=MAX_BYTES,
        downloadTimeoutSeconds=5,
    )
    sidecar = Sidecar(workdir / "sidecar", config, env={"HOT_UPDATE_TOKEN": TOKEN})
    try:
        sidecar.start(wait_ready=True)
        api = Api(port, TOKEN)
        sidecar.wait_for(lambda: api.get()[0] == 200, 10, "the hot-update API")
        yield Target(sidecar, game, files, file_dir, f"http://127.0.0.1:{port}")
    finally:
        sidecar.stop()
        game.stop()
        files.stop()


def _real_file_url(case: Any, target: Target) -> None:
    """Point most valid POSTs that name a ``url`` at the local file server: a new version of
    the file, or one of the ways a download fails (invalid requests stay as generated: they
    must be rejected, whatever the URL)."""
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    places = [p for p in (case.query, case.body) if isinstance(p, dict) and "url" in p]
    if not places:
        return
    key = zlib.crc32(repr(sorted((k, repr(v)) for p in places for k, v in p.items())).encode())
    kind = key % 10
    if kind >= 8:
        return  # as generated: refused by allowedUrlPrefixes, or not a usable URL
    target.rewrites += 1
    sha256 = None
    if kind <= 2:
        url = target.files.url(f"/v/{target.rewrites}/{FILE}")
        if kind == 2:  # a presigned URL: the signature is used, never shown nor stored
            url += f"?X-Amz-Signature={SECRET}"
        sha256 = hashlib.sha256(versioned_content(FILE, str(target.rewrites))).hexdigest()
    elif kind == 3:
        url = target.files.url(f"/drop/{FILE}?sig={SECRET}")  # half the file, then it drops
    elif kind == 4:
        url = target.files.url(f"/status/404?{FILE}")
    elif kind == 5:
        url = target.files.url(f"/big?size={MAX_BYTES + 1}&name={FILE}")
    elif kind == 6:
        url = target.files.url(f"/v/..%2f..%2fsecret/{FILE}")  # out of the prefix, decoded
    else:
        url = target.files.url(f"/partial/{FILE}")  # 206: a part is not a download
    for place in places:
        place["url"] = url
        if sha256 is not None and "sha256" in place and key % 2:
            place["sha256"] = sha256  # else a generated (wrong) checksum: 422


def _track(target: Target, response: Any) -> None:
    target.outcomes[response.status_code] = target.outcomes.get(response.status_code, 0) + 1
    assert SECRET not in response.text
    if response.status_code != 200:
        return
    body = response.json()
    counter = body["url"].rsplit("/", 2)[-2]
    target.applied = versioned_content(FILE, counter)
    target.applied_version = body["version"]
    assert body["sha256"] == hashlib.sha256(target.applied).hexdigest()


@hot_update_schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_hot_update_api_conforms_and_never_breaks_the_file(case: Any, target: Target) -> None:
    if case.method == "POST":
        _real_file_url(case, target)
    response = case.call_and_validate(base_url=target.hot_update_url)
    _track(target, response)
    target.check_file_dir()


@admin_schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_conforms(case: Any, target: Target) -> None:
    case.call_and_validate(base_url=target.sidecar.admin)


def test_the_sidecar_survived_the_fuzzing(target: Target) -> None:
    """Runs after the fuzz tests above (pytest keeps the order of a module)."""
    if not target.outcomes:
        pytest.skip("checks what the fuzz tests of this module left behind: run them too")
    assert target.sidecar.get("/healthz")[0] == 200
    # The fuzzing reached every stage: refused input and URLs, failed downloads, successes.
    for status in (200, 400, 401, 403, 413, 422, 502):
        assert target.outcomes.get(status), f"no {status} answer: {target.outcomes}"
    target.check_file_dir()
    status, body = Api(int(target.hot_update_url.rsplit(":", 1)[1]), TOKEN).get()
    assert status == 200
    assert body["version"] == target.applied_version
    assert target.applied is not None
    assert body["sha256"] == hashlib.sha256(target.applied).hexdigest()
    target.game.wait_loaded(target.applied.decode())
    log = target.sidecar.log()
    assert "Traceback" not in log and "Error handling request" not in log, log[-4000:]
    assert SECRET not in log
    assert SECRET not in json.dumps(target.sidecar.state())
    assert any(SECRET in path for path in target.files.requests), "the signature was used"


HOSTILE_BODIES = {
    "JSON nested 20,000 deep": ("application/json", b"[" * 20_000),
    "JSON object nested in a field": ("application/json", b'{"version": ' + b"[" * 5_000),
    "JSON key twice": (
        "application/json", b'{"version": "v1", "url": "http://h/x", "version": "v2"}'
    ),
    "form field twice": (
        "application/x-www-form-urlencoded", b"version=v1&version=v2&url=http://h/x"
    ),
    "unknown charset": ("application/json; charset=x-no-such", b'{"version": "v1"}'),
    "not UTF-8": ("application/json", b'{"version": "v1\xff\xfe"}'),
    "over 64 KiB": ("application/json", b'{"version": "' + b"1" * 70_000 + b'"}'),
    "NUL in a form": ("application/x-www-form-urlencoded", b"version=v1\x00&url=http://h/x"),
    # review of issue 12:
    "percent-escape not UTF-8": (
        "application/x-www-form-urlencoded", b"version=v1&url=http://h/%ff.cfg"),
    "lone surrogate in JSON": ("application/json", b'{"version": "v1", "url": "http://h/\\ud800"}'),
    "overlong UTF-8 dots": (
        "application/x-www-form-urlencoded", b"version=v1&url=http://h/a/%25c0%25ae%25c0%25ae/x"),
    "non-ASCII version digits": ("application/json", '{"version": "v\u0661", "url": "http://h/x"}'.encode()),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_hostile_bodies_get_documented_answers(name: str, target: Target) -> None:
    """The attack inputs of issue 12 sent raw, each answer validated against the OpenAPI
    document by schemathesis (status documented, JSON body of the documented shape)."""
    content_type, body = HOSTILE_BODIES[name]
    case = hot_update_schema["/hot-update"]["POST"].Case(media_type="application/json")
    response = case.call(
        base_url=target.hot_update_url,
        data=body,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code in (400, 413), response.text
    case.validate_response(response)
    target.check_file_dir()
    log = target.sidecar.log()
    assert "Traceback" not in log and "Error handling request" not in log


@attrs.define
class GameTarget:
    """The sidecar serving the game API, and what its accepted requests queued (newest last)."""

    sidecar: Sidecar
    url: str
    spec: dict[str, Any] = attrs.field(factory=dict)
    labels: dict[str, str | None] = attrs.field(factory=dict)
    annotations: dict[str, str | None] = attrs.field(factory=dict)
    outcomes: dict[int, int] = attrs.field(factory=dict)

    def track(self, response: Any) -> None:
        self.outcomes[response.status_code] = self.outcomes.get(response.status_code, 0) + 1
        if response.status_code != 202:
            return
        changes = response.json()["changes"]
        self.spec.update({k: v for k, v in changes.items() if k not in ("labels", "annotations")})
        self.labels.update(changes.get("labels", {}))
        self.annotations.update(changes.get("annotations", {}))

    def holds_what_was_queued(self) -> bool:
        gs = self.sidecar.state()["gameserver"]
        metadata = gs["metadata"]
        return (
            all(gs["spec"].get(k) == v for k, v in self.spec.items())
            and all(metadata["labels"].get(k) == v for k, v in self.labels.items())
            and all(metadata["annotations"].get(k) == v for k, v in self.annotations.items())
        )


@pytest.fixture(scope="module")
def game_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GameTarget]:
    port = free_port()
    config = {
        "plugins": [
            {
                "name": "game_api",
                "config": {"listen": f"127.0.0.1:{port}", "auth": {"tokenEnv": "GAME_TOKEN"}},
            }
        ]
    }
    sidecar = Sidecar(tmp_path_factory.mktemp("fuzz-game"), config, env={"GAME_TOKEN": GAME_TOKEN})
    try:
        sidecar.start(wait_ready=True)
        yield GameTarget(sidecar, f"http://127.0.0.1:{port}")
    finally:
        sidecar.stop()


@game_api_schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_game_api_conforms(case: Any, game_target: GameTarget) -> None:
    game_target.track(case.call_and_validate(base_url=game_target.url))


def test_the_game_api_survived_and_lost_nothing(game_target: GameTarget) -> None:
    """Runs after the fuzz test above (pytest keeps the order of a module)."""
    if not game_target.outcomes:
        pytest.skip("checks what the game API fuzzing left behind: run it too")
    # 401 is not among them: the document says a token is optional (it is, by default), so
    # schemathesis always sends the configured one; tests/plugins/game_api checks 401.
    for status in (200, 202, 400, 403, 415):
        assert game_target.outcomes.get(status), f"no {status} answer: {game_target.outcomes}"
    sidecar = game_target.sidecar
    sidecar.wait_for(game_target.holds_what_was_queued, 10, "the queued writes")
    log = sidecar.log()
    assert "Traceback" not in log and "Error handling request" not in log, log[-4000:]
    assert "rejected" not in log, log[-4000:]
