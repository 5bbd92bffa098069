"""The OpenAPI documents shipped in the package: valid, complete, and their examples true.

``kidecar_core/_runtime/openapi.yaml`` describes the admin server, ``kidecar_plugins/hot_update/
openapi.yaml`` the hot-update API and ``kidecar_plugins/game_api/openapi.yaml`` the game API.
They are what ``test_api_fuzz.py`` fuzzes the sidecar with,
so they must be valid OpenAPI 3.1 (the official meta-schema), name exactly the routes the
sidecar registers, document every status the plugin answers with, and every example in them
must validate against its schema.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib.resources
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from kidecar_core._config.catalog import load_parsed
from kidecar_core._plugins.manager import Plugins
from kidecar_core._runtime.runtime import Runtime, RuntimeOptions
from kidecar_core._runtime.servers import make_admin_app
from kidecar_core._store.local import LocalStore
from kidecar_core._store.objects import PodIdentity
from kidecar_plugins.game_api.errors import REASONS as GAME_API_REASONS
from kidecar_plugins.hot_update.errors import RESULT_LABELS

ROOT = Path(__file__).resolve().parents[2]
DOCS = {
    "admin": ("kidecar_core._runtime", "openapi.yaml"),
    "hot_update": ("kidecar_plugins.hot_update", "openapi.yaml"),
    "game_api": ("kidecar_plugins.game_api", "openapi.yaml"),
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DOC_URI = "urn:kidecar:openapi"


def load_doc(which: str) -> dict[str, Any]:
    package, name = DOCS[which]
    data: dict[str, Any] = yaml.safe_load(
        (importlib.resources.files(package) / name).read_text(encoding="utf-8")
    )
    return data


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def follow(doc: dict[str, Any], node: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """A response or parameter object and its JSON pointer, through a local ``$ref``."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        where = ref[1:]
        node = doc
        for part in where.split("/")[1:]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, where


def validator_at(doc: dict[str, Any], where: str) -> Draft202012Validator:
    """A validator for the schema at JSON pointer ``where`` of ``doc`` (its ``$ref``s resolved)."""
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": f"{DOC_URI}#{where}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def examples(doc: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(what, pointer of the schema, example value) for every example of every media type."""
    for path, method, op in operations(doc):
        contents = []
        if "requestBody" in op:
            contents.append(
                (
                    f"{method} {path} request",
                    op["requestBody"],
                    pointer("paths", path, method, "requestBody"),
                )
            )
        for status, response in op["responses"].items():
            node, where = follow(doc, response, pointer("paths", path, method, "responses", status))
            contents.append((f"{method} {path} {status}", node, where))
        for what, node, where in contents:
            for media, body in node.get("content", {}).items():
                schema_at = f"{where}{pointer('content', media, 'schema')}"
                for name, example in body.get("examples", {}).items():
                    example, _ = follow(doc, example, "")  # through components/examples
                    yield f"{what} {media} {name}", schema_at, example["value"]
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        for i, value in enumerate(schema.get("examples", [])):
            yield f"schema {name} example {i}", pointer("components", "schemas", name), value


@pytest.mark.parametrize("which", sorted(DOCS))
def test_documents_are_valid_openapi_3_1(which: str) -> None:
    doc = load_doc(which)
    assert doc["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(doc).validate()  # the official OpenAPI 3.1 meta-schema
    for schema in doc.get("components", {}).get("schemas", {}).values():
        Draft202012Validator.check_schema(schema)  # raises SchemaError naming the keyword


@pytest.mark.parametrize("which", sorted(DOCS))
def test_every_example_validates_against_its_schema(which: str) -> None:
    doc = load_doc(which)
    found = list(examples(doc))
    assert found
    for what, where, value in found:
        errors = [e.message for e in validator_at(doc, where).iter_errors(value)]
        assert not errors, f"{which}: {what}: {errors}"


def test_a_wrong_example_would_be_caught() -> None:
    doc = load_doc("hot_update")
    where = pointer("components", "schemas", "UpdateFailed")
    assert not validator_at(doc, where).is_valid({"status": "error", "code": 400})
    assert not validator_at(doc, where).is_valid(
        {"status": "error", "version": None, "code": 418, "reason": "r", "message": "m"}
    )


def registered_routes(tmp_path: Path) -> dict[str, set[tuple[str, str]]]:
    """The routes as (METHOD, path) per server (``admin`` or the plugin serving them), from a
    real configured runtime; aiohttp's ``{key:.+}`` is written ``{key}`` as in OpenAPI."""
    env = {"POD_NAME": "gs-0", "POD_NAMESPACE": "default"}
    config = {
        "plugins": [
            {
                "name": "hot_update",
                "config": {
                    "fileDir": str(tmp_path / "downloads"),
                    "listen": "127.0.0.1:5000",
                    "signal": {"processName": "game"},
                },
            },
            {"name": "http_probe", "config": {"endpoints": [{"url": "http://127.0.0.1:1/"}]}},
            {"name": "game_api", "config": {}},
        ]
    }
    plugins = Plugins.load(env)
    loaded = load_parsed(config, plugins, env, lenient=False)
    plugins.activate(loaded.plugins)
    identity = PodIdentity("gs-0", "default")
    store = LocalStore(tmp_path / "state.json", identity)
    runtime = Runtime(loaded, plugins, store, identity, RuntimeOptions(), local_mode=True)
    registry = runtime.configure()
    routes = {
        "admin": {
            (r.method, r.resource.canonical)
            for r in make_admin_app(runtime.readiness, runtime.metrics).router.routes()
        }
    }
    for r in registry.routes:
        server = "admin" if r.listen is None else r.plugin
        routes.setdefault(server, set()).add(
            (r.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.path))
        )
    asyncio.run(store.close())
    return routes


def documented(which: str) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, method, _ in operations(load_doc(which))}


def test_every_registered_route_is_documented_and_vice_versa(tmp_path: Path) -> None:
    routes = registered_routes(tmp_path)
    assert set(routes) == set(DOCS)
    for which, registered in routes.items():
        assert registered == documented(which), which


def test_every_status_the_hot_update_api_answers_is_documented() -> None:
    doc = load_doc("hot_update")
    post = doc["paths"]["/hot-update"]["post"]["responses"]
    assert {int(s) for s in post} == set(RESULT_LABELS)
    codes = doc["components"]["schemas"]["UpdateFailed"]["properties"]["code"]["enum"]
    assert set(codes) == set(RESULT_LABELS) - {200}


def test_every_status_the_game_api_answers_is_documented() -> None:
    doc = load_doc("game_api")
    codes = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    assert set(codes) == set(GAME_API_REASONS)
    answered = {int(s) for _, _, op in operations(doc) for s in op["responses"]} - {200, 202}
    assert answered == set(GAME_API_REASONS)


def test_the_documents_are_package_data() -> None:
    """pyproject.toml ships them in the wheel (the editable install would hide a missing glob)."""
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    for package, name in DOCS.values():
        path = Path(*package.split(".")) / name
        globs = [
            (Path(*owner.split(".")), pattern)
            for owner, patterns in package_data.items()
            for pattern in patterns
        ]
        assert any(
            path.is_relative_to(owner) and fnmatch.fnmatch(str(path.relative_to(owner)), pattern)
            for owner, pattern in globs
        ), f"{path} is not matched by [tool.setuptools.package-data]"
        assert (ROOT / path).is_file()
