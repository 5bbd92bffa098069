"""``kidecar inject``: add the sidecar to workload manifests, like ``linkerd inject``.

Pure functions on parsed YAML (dicts), so that they are easy to test and to reuse:

- :func:`sidecar_from_config` asks every configured plugin what it needs from the pod
  (``kidecar_pod_requirements``) and merges the answers with the config's ``resources`` and
  ``sidecarstartorder`` into a :class:`Sidecar`;
- :func:`inject` finds the pod spec of one document (Pod, Deployment, StatefulSet, ReplicaSet,
  DaemonSet, Job, CronJob, OpenKruiseGame GameServerSet) and edits it with
  :func:`kidecar_core._inject.podedit.inject_pod_spec`; :func:`inject_documents` does it for a
  multi-document file (``kind: List`` included).

Injecting is idempotent: a second run replaces the sidecar container in place and reuses the
volumes and mounts it finds, so its output equals its input.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import yaml

from kidecar_core._config.catalog import DEFAULT_CONFIG_MAP
from kidecar_core._config.strict_yaml import (
    YAML12_FLOAT,
    YamlFloat,
    parse_yaml_documents,
)
from kidecar_core._inject.podedit import (
    CONFIG_DIR,
    CONFIG_VOLUME,
    SIDECAR_NAME,
    InjectError,
    InjectOptions,
    Sidecar,
    inject_pod_spec,
)
from kidecar_core._plugins.podspec import ContainerPort, PodRequirements, SharedVolume
from kidecar_core._store.validation import is_dns1123_label, is_dns1123_subdomain
from kidecar_core._version import __version__
from kidecar_core.errors import ConfigError

if TYPE_CHECKING:
    from kidecar_core._config.loader import LoadedConfig
    from kidecar_core._plugins.manager import Plugins

__all__ = [
    "SIDECAR_NAME",
    "InjectError",
    "InjectOptions",
    "Sidecar",
    "default_image",
    "dump_documents",
    "inject",
    "inject_documents",
    "leading_comment",
    "load_documents",
    "merge_requirements",
    "options_from",
    "read_text",
    "sidecar_from_config",
]


# Kinds whose documents are passed through unchanged: they have no pod template.  Any other
# kind without a known pod-spec location is an error, so that a workload kind kidecar does not
# know is never silently left without its sidecar.
PODLESS_KINDS = frozenset(
    {
        "ConfigMap",
        "Secret",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Namespace",
        "PersistentVolumeClaim",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
)

# kind -> (API groups it may come from, path of the pod spec in the document).
WORKLOAD_KINDS: Mapping[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "Pod": (frozenset({""}), ("spec",)),
    "Deployment": (frozenset({"apps"}), ("spec", "template", "spec")),
    "StatefulSet": (frozenset({"apps"}), ("spec", "template", "spec")),
    "ReplicaSet": (frozenset({"apps"}), ("spec", "template", "spec")),
    "DaemonSet": (frozenset({"apps"}), ("spec", "template", "spec")),
    "Job": (frozenset({"batch"}), ("spec", "template", "spec")),
    "CronJob": (frozenset({"batch"}), ("spec", "jobTemplate", "spec", "template", "spec")),
    "GameServerSet": (frozenset({"game.kruise.io"}), ("spec", "gameServerTemplate", "spec")),
}

K = TypeVar("K")
V = TypeVar("V")

_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def default_image(env: Mapping[str, str]) -> str:
    """``$KIDECAR_IMAGE``, else ``kidecar:<version>`` (what ``docker build -t`` would name it)."""
    return env.get("KIDECAR_IMAGE") or f"kidecar:{__version__}"


def options_from(
    *,
    image: str,
    config_map: str | None,
    container: str | None,
    admin_port: int,
    service_account: str | None,
) -> InjectOptions:
    """Check the command line's choices; :class:`InjectError` for a bad one."""
    if not 0 < admin_port <= 65535:
        raise InjectError(f"--admin-port {admin_port} is not in 1-65535")
    config_map = config_map or DEFAULT_CONFIG_MAP
    if not is_dns1123_subdomain(config_map):
        raise InjectError(f"--config-map {config_map!r} is not a valid ConfigMap name")
    if not image.strip():
        raise InjectError("--image must not be empty")
    if service_account and not is_dns1123_subdomain(service_account):
        raise InjectError(
            f"--service-account {service_account!r} is not a valid ServiceAccount name"
        )
    return InjectOptions(
        image=image,
        config_map=config_map,
        container=container or None,
        admin_port=admin_port,
        service_account=service_account or None,
    )


def read_text(filename: str, stdin: TextIO) -> str:
    """The workload file's text (``-``: standard input)."""
    if filename == "-":
        return stdin.read()
    try:
        return Path(filename).read_text(encoding="utf-8")
    except OSError as e:
        raise InjectError(f"cannot read it: {e.strerror or e}") from None


# -- what the plugins need ----------------------------------------------------------------------


def sidecar_from_config(loaded: LoadedConfig, plugins: Plugins) -> Sidecar:
    """Ask every configured plugin (activated in ``plugins``) for its pod requirements."""
    answers: list[tuple[str, PodRequirements]] = []
    for entry in loaded.boot_sequence():
        for answer in plugins.pod_requirements(entry.name, entry.config):
            if not isinstance(answer, PodRequirements):
                raise InjectError(
                    f"plugin {entry.name!r} ({entry.path}) answered kidecar_pod_requirements with "
                    f"{answer!r}, not a PodRequirements; report this to the plugin's authors"
                )
            answers.append((f"{entry.path} ({entry.name})", answer))
    top = loaded.top
    return Sidecar(merge_requirements(answers), top.resources, top.sidecar_start_order)


def merge_requirements(answers: Iterable[tuple[str, PodRequirements]]) -> PodRequirements:
    """Merge the plugins' answers (``(who, requirements)`` pairs): the union of their ports and
    shared volumes (identical entries once), ``share_process_namespace`` if any needs it.

    Raises :class:`InjectError` naming both plugins when two answers contradict each other
    (one port name for two ports, one volume name for two paths, ...) or an answer is invalid.
    """
    port_names: dict[str, tuple[str, ContainerPort]] = {}
    port_numbers: dict[tuple[int, str], tuple[str, ContainerPort]] = {}
    volume_names: dict[str, tuple[str, SharedVolume]] = {}
    volume_paths: dict[str, tuple[str, SharedVolume]] = {}
    share = False
    for who, req in answers:
        share = share or req.share_process_namespace
        for port in req.ports:
            _check_port(who, port)
            _claim(port_names, port.name, who, port)
            _claim(port_numbers, (port.port, port.protocol), who, port)
        for volume in req.shared_volumes:
            _check_volume(who, volume)
            _claim(volume_names, volume.name, who, volume)
            _claim(volume_paths, volume.mount_path.rstrip("/") or "/", who, volume)
    return PodRequirements(
        ports=tuple(p for _, p in port_names.values()),
        shared_volumes=tuple(v for _, v in volume_names.values()),
        share_process_namespace=share,
    )


def _claim(index: dict[K, tuple[str, V]], key: K, who: str, value: V) -> None:
    """Record that ``who`` needs ``value`` under ``key``; a different value is a conflict."""
    seen = index.get(key)
    if seen is not None and seen[1] != value:
        raise InjectError(f"{who} asks for {value}, but {seen[0]} for {seen[1]}")
    index.setdefault(key, (who, value))


def _check_port(who: str, port: ContainerPort) -> None:
    if not _PORT_NAME.match(port.name) or "--" in port.name:
        raise InjectError(
            f"{who}: port name {port.name!r} is invalid: at most 15 characters a-z, 0-9 and '-', "
            "with a letter, not starting or ending with '-' (a Kubernetes IANA_SVC_NAME)"
        )
    if not 0 < port.port <= 65535:
        raise InjectError(f"{who}: port {port.port} ({port.name}) is not in 1-65535")
    if port.protocol not in ("TCP", "UDP", "SCTP"):
        raise InjectError(f"{who}: protocol {port.protocol!r} is not TCP, UDP or SCTP")


def _check_volume(who: str, volume: SharedVolume) -> None:
    if not is_dns1123_label(volume.name):
        raise InjectError(
            f"{who}: volume name {volume.name!r} is not a DNS label (a-z, 0-9, '-', 1-63)"
        )
    if not volume.mount_path.startswith("/"):
        raise InjectError(f"{who}: mount path {volume.mount_path!r} is not absolute")
    if volume.name == CONFIG_VOLUME:
        raise InjectError(
            f"{who}: volume name {CONFIG_VOLUME!r} is the sidecar's config volume; choose another"
        )
    path = posixpath.normpath(volume.mount_path)
    if path in ("/", CONFIG_DIR) or path.startswith(f"{CONFIG_DIR}/"):
        raise InjectError(
            f"{who}: mount path {volume.mount_path!r} would hide the sidecar's "
            f"{'root' if path == '/' else 'config at ' + CONFIG_DIR}; choose another"
        )


# -- documents ------------------------------------------------------------------------------------


def inject(doc: dict[str, Any], sidecar: Sidecar, options: InjectOptions) -> dict[str, Any]:
    """Return ``doc`` (one workload) with the sidecar injected; ``doc`` itself is not changed."""
    out, _ = inject_documents([doc], sidecar, options)
    result: dict[str, Any] = out[0]
    return result


def inject_documents(
    docs: Sequence[Any], sidecar: Sidecar, options: InjectOptions
) -> tuple[list[dict[str, Any]], list[str]]:
    """Inject every document (empty ones are dropped); return ``(documents, notes)``.

    ``notes`` are things the user should know (e.g. the sidecar had to run as root), one
    sentence each, already naming the document.
    """
    notes: list[str] = []
    out: list[dict[str, Any]] = []

    def one(doc: Any, where: str) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise InjectError(f"{where} is not a Kubernetes object (a mapping), but {doc!r:.60}")
        kind = doc.get("kind")
        api_version = doc.get("apiVersion")
        if not isinstance(kind, str) or not isinstance(api_version, str):
            raise InjectError(f"{where} has no kind and apiVersion")
        name = (doc.get("metadata") or {}).get("name") or "(no name)"
        label = f"{where} ({kind} {name})"
        if kind == "List" and api_version == "v1":
            items = doc.get("items") or []
            return {
                **doc,
                "items": [one(item, f"{where}, item {i + 1}") for i, item in enumerate(items)],
            }
        if kind in PODLESS_KINDS:
            return doc
        path = _pod_spec_path(kind, api_version, where)
        result: dict[str, Any] = _deep_copy(doc)
        parent, spec = _pod_spec_at(result, path, label)
        parent[path[-1]] = inject_pod_spec(spec, sidecar, options, label, notes)
        return result

    for i, doc in enumerate(docs):
        if doc is None:
            continue
        out.append(one(doc, f"document {i + 1}"))
    return out, notes


def _pod_spec_path(kind: str, api_version: str, where: str) -> tuple[str, ...]:
    """Where a workload of ``kind`` (``apiVersion`` ``api_version``) holds its pod spec, from
    WORKLOAD_KINDS; InjectError naming ``where`` for a kind kidecar cannot inject into."""
    known = WORKLOAD_KINDS.get(kind)
    group = api_version.rpartition("/")[0]
    if known is None or group not in known[0]:
        supported = ", ".join(WORKLOAD_KINDS)
        raise InjectError(
            f"{where}: cannot inject into kind {kind} ({api_version}); supported: "
            f"{supported} (and pod-less kinds such as Service, passed through)"
        )
    return known[1]


def _pod_spec_at(
    doc: dict[str, Any], path: tuple[str, ...], label: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(parent, spec)``: the pod spec at ``path`` in ``doc`` and the mapping holding it;
    InjectError naming ``label`` when a step is missing or not a mapping."""
    parent = doc
    for key in path[:-1]:
        child = parent.get(key)
        if not isinstance(child, dict):
            raise InjectError(f"{label}: no pod spec at {'.'.join(path)}")
        parent = child
    spec = parent.get(path[-1])
    if not isinstance(spec, dict):
        raise InjectError(f"{label}: no pod spec at {'.'.join(path)}")
    return parent, spec


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# -- reading and writing YAML ---------------------------------------------------------------------


def load_documents(text: str, name: str) -> list[Any]:
    """Parse a (multi-document) YAML text with the config's rules (no duplicate keys, bounded
    nesting and aliases); a problem becomes an :class:`InjectError`."""
    try:
        return parse_yaml_documents(text, name)
    except ConfigError as e:
        raise InjectError(str(e)) from None


class _Dumper(yaml.SafeDumper):
    """Block style everywhere; multi-line strings (a ConfigMap's config.yaml) as ``|`` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        # Anchors and aliases (&id001) are valid YAML but confuse people and some tools.
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_yaml_float(dumper: yaml.SafeDumper, value: YamlFloat) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:float", value.text)


_Dumper.add_representer(str, _represent_str)
# Numbers keep the spelling they were read with (`1e3` stays `1e3`, a YAML 1.2 float), and a
# string spelled like one is quoted.
_Dumper.add_representer(YamlFloat, _represent_yaml_float)
_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, list("-+0123456789"))


def leading_comment(text: str) -> str:
    """The comment lines that open a file (a header, a licence): ``kidecar inject`` keeps them,
    while comments anywhere else are lost in parsing."""
    lines: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line + "\n")
    return "".join(lines)


def dump_documents(docs: Sequence[Any]) -> str:
    """YAML for ``kubectl apply -f -``: key order kept, documents separated by ``---``."""
    return yaml.dump_all(
        docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=2**16
    )
