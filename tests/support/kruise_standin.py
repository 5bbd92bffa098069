"""A small stand-in for kruise-manager (and the kubelet) in the OKG e2e tier.

OpenKruiseGame's GameServerSet controller does not create Pods: it writes an Advanced
StatefulSet (`apps.kruise.io/v1beta1` `statefulsets`, "ASTS") and leaves the Pods to OpenKruise's
kruise-manager. The test cluster runs neither kruise-manager nor a kubelet, so this module plays
both, for the parts OKG depends on:

- **Pods of an ASTS.** The ordinals that should have a Pod are the first `spec.replicas` numbers
  that are not in `spec.reserveOrdinals` (ints, or "a-b" ranges). A missing one is created as
  Kruise names and builds it: `<asts>-<ordinal>`, the template's labels (OKG's
  `game.kruise.io/owner-gss` selector label among them) and annotations, Kruise's pod-name /
  pod-index labels, the template's spec (with the `InPlaceUpdateReady` readiness gate OKG puts
  there), `hostname`/`subdomain`, and a controller owner reference to the ASTS. A Pod whose
  ordinal should not exist is deleted (Kruise's scale-in; OKG picks the ordinals through
  `reserveOrdinals`), and so are the GameServers it owns, as Kubernetes' garbage collector
  would (OKG's default `reclaimPolicy: Cascade` makes the Pod their owner).
- **The kubelet's part.** Each Pod is marked Running and Ready through `pods/status`, with every
  readiness gate's condition True, its containers running and ready.
- **ASTS status**: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
  updatedReadyReplicas, observedGeneration, labelSelector, revisions (OKG copies these into
  the GameServerSet's status).

It writes only when something differs, so at steady state it makes no writes at all.

Structure: a `StandIn` runs *controllers*. Each declares the resources it watches (`Watch`:
a list function and how an object maps to the keys to reconcile) and a `reconcile(key)`; the
stand-in runs one watch thread per declared watch (list, then watch from the list's
resourceVersion, relist on 410 or any error) and one worker per controller draining a
de-duplicating queue. `StatefulSetController` is the ASTS/Pod controller above.

Kruise's serverless PodProbeMarker protocol (Kruise >= 1.8, feature gate
`EnablePodProbeMarkerOnServerless`, on here as on a virtual-kubelet cluster):

- **The pod webhook's part.** A Pod is created with the annotation `kruise.io/podprobe`: the
  probes of the PodProbeMarkers of its namespace whose selector matches its labels, as Kruise's
  webhook writes them at creation (`podprobe_annotations`: a probe needs a `podConditionType`
  and a container of the Pod; the first one per condition type and per container/name wins;
  `markerPolicy` is dropped), and `kruise.io/podprobemarker-list` naming those markers. The
  runtime of the node (here: kidecar's `pod_probe`) runs the probes and writes the conditions.
- **kruise-manager's PodProbeMarker status** (`PodProbeMarkerController`):
  `observedGeneration` and `matchedPods`. OKG waits for `observedGeneration` before it creates
  the Advanced StatefulSet of a GameServerSet with `serviceQualities`.

This module deliberately does not import pytest.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.support.apiserver import api_client_from_kubeconfig

log = logging.getLogger(__name__)

KRUISE_GROUP = "apps.kruise.io"
STATEFULSETS = (KRUISE_GROUP, "v1beta1", "statefulsets")
"""Group, version and plural of OpenKruise's Advanced StatefulSet."""
PODPROBEMARKERS = (KRUISE_GROUP, "v1alpha1", "podprobemarkers")
"""Group, version and plural of OpenKruise's PodProbeMarker."""
PODPROBE_ANNOTATION = "kruise.io/podprobe"
PODPROBEMARKER_LIST_ANNOTATION = "kruise.io/podprobemarker-list"
GAMESERVERS = ("game.kruise.io", "v1alpha1", "gameservers")

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
# Conditions a kubelet sets on a running, ready Pod (readiness gates come on top).
KUBELET_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
WATCH_SECONDS = 2  # server-side timeout of each watch call: bounds how long stop() waits
RETRY_SECONDS = 0.5

Key = tuple[str, str]
"""(namespace, name) of the object a controller reconciles."""


@dataclass(frozen=True)
class Watch:
    """A resource a controller watches: `list_func(**kwargs)` lists it in all namespaces (a
    `kubernetes` list function that also serves `watch=True`); `keys(obj)` maps one object
    (a dict) to the keys to reconcile."""

    list_func: Callable[..., Any]
    keys: Callable[[dict[str, Any]], Iterable[Key]]


class Controller(Protocol):
    """What the stand-in runs: the resources it watches and what to do for one key."""

    name: str

    def watches(self) -> Iterable[Watch]: ...

    def reconcile(self, key: Key) -> None: ...


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ordinals(items: Iterable[int | str] | None) -> set[int]:
    """The ordinals of an ASTS's `reserveOrdinals`: ints, numeric strings and "a-b" ranges
    (inclusive), as Kruise reads them. Raises ValueError on anything else."""
    result: set[int] = set()
    for item in items or ():
        text = str(item).strip()
        match = re.fullmatch(r"(\d+)-(\d+)", text)
        if match:
            result.update(range(int(match[1]), int(match[2]) + 1))
        else:
            result.add(int(text))
    return result


def desired_ordinals(replicas: int, reserved: set[int]) -> set[int]:
    """The first `replicas` ordinals not in `reserved` (Kruise's rule for reserveOrdinals)."""
    result: set[int] = set()
    ordinal = 0
    while len(result) < replicas:
        if ordinal not in reserved:
            result.add(ordinal)
        ordinal += 1
    return result


def ordinal_of(pod_name: str, set_name: str) -> int | None:
    """The ordinal of Pod `<set_name>-<n>`, or None when the name has another form."""
    prefix = set_name + "-"
    rest = pod_name[len(prefix) :] if pod_name.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


def _owned_by(obj: Mapping[str, Any], kind: str, group: str) -> Iterable[Key]:
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") == kind and str(ref.get("apiVersion", "")).startswith(group + "/"):
            yield str(meta.get("namespace", "")), str(ref.get("name", ""))


def selects(selector: Any, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector matches `labels`; an empty or missing one matches nothing (the
    rule Kruise applies to PodProbeMarkers)."""
    if not isinstance(selector, Mapping):
        return False
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return False
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for e in expressions:
        key, values, present = e.get("key"), e.get("values") or [], e.get("key") in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(e.get("operator"), False)
        if not ok:
            return False
    return True


def podprobe_annotations(
    markers: Iterable[Mapping[str, Any]], labels: Mapping[str, str], spec: Mapping[str, Any]
) -> dict[str, str]:
    """The annotations Kruise's pod webhook adds to a new Pod (labels `labels`, spec `spec`)
    from the PodProbeMarkers of its namespace; empty when no probe applies."""
    containers = {c.get("name") for c in spec.get("containers") or ()}
    containers |= {
        c.get("name")
        for c in spec.get("initContainers") or ()
        if c.get("restartPolicy") == "Always"
    }
    probes: list[dict[str, Any]] = []
    names: set[str] = set()
    seen_conditions: set[str] = set()
    seen_keys: set[tuple[str, str]] = set()
    for marker in sorted(markers, key=lambda m: str(m["metadata"]["name"])):
        if not selects((marker.get("spec") or {}).get("selector"), labels):
            continue
        for probe in (marker.get("spec") or {}).get("probes") or ():
            condition = probe.get("podConditionType") or ""
            key = (str(probe.get("containerName")), str(probe.get("name")))
            if not condition or condition in seen_conditions or key in seen_keys:
                continue
            if key[0] not in containers:
                continue
            seen_conditions.add(condition)
            seen_keys.add(key)
            names.add(str(marker["metadata"]["name"]))
            # Field order of Kruise's PodContainerProbe JSON; markerPolicy is left out.
            probes.append({
                "name": probe.get("name"),
                "containerName": probe.get("containerName"),
                "probe": probe.get("probe") or {},
                "podConditionType": condition,
            })  # fmt: skip
    if not probes:
        return {}
    return {
        PODPROBE_ANNOTATION: json.dumps(probes, separators=(",", ":")),
        PODPROBEMARKER_LIST_ANNOTATION: ",".join(sorted(names)),
    }


class StatefulSetController:
    """Pods of each Advanced StatefulSet, their kubelet-like status, and the ASTS status."""

    name = "statefulsets"

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self.core = k8s.CoreV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    def watches(self) -> Iterable[Watch]:
        def list_sets(**kwargs: Any) -> Any:
            return self.custom.list_cluster_custom_object(*STATEFULSETS, **kwargs)

        def set_key(obj: dict[str, Any]) -> Iterable[Key]:
            meta = obj.get("metadata") or {}
            return [(str(meta.get("namespace", "")), str(meta.get("name", "")))]

        return [
            Watch(list_sets, set_key),
            Watch(
                self.core.list_pod_for_all_namespaces,
                lambda pod: _owned_by(pod, "StatefulSet", KRUISE_GROUP),
            ),
        ]

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        try:
            asts = self.custom.get_namespaced_custom_object(*STATEFULSETS[:2], namespace,
                                                            STATEFULSETS[2], name)  # fmt: skip
        except ApiException as e:
            if e.status == 404:
                return
            raise
        spec = asts.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods = [
            self.api.sanitize_for_serialization(p)
            for p in self.core.list_namespaced_pod(namespace, label_selector=label_selector).items
        ]
        want = desired_ordinals(
            int(spec.get("replicas") or 0), parse_ordinals(spec.get("reserveOrdinals"))
        )
        live = {}
        for pod in pods:
            ordinal = ordinal_of(pod["metadata"]["name"], name)
            if pod["metadata"].get("deletionTimestamp") or ordinal is None:
                continue
            if ordinal in want:
                live[ordinal] = pod
            else:
                self._delete_pod(namespace, pod)
        for ordinal in sorted(want - set(live)):
            live[ordinal] = self._create_pod(asts, ordinal)
        for pod in live.values():
            self._mark_ready(pod)
        self._update_status(asts, len(live), label_selector)

    def _create_pod(self, asts: Mapping[str, Any], ordinal: int) -> dict[str, Any]:
        meta, spec = asts["metadata"], asts["spec"]
        template = spec.get("template") or {}
        pod_name = f"{meta['name']}-{ordinal}"
        labels = {
            **((template.get("metadata") or {}).get("labels") or {}),
            POD_NAME_LABEL: pod_name,
            POD_INDEX_LABEL: str(ordinal),
            REVISION_LABEL: self._revision(asts),
        }
        pod_spec = {**(template.get("spec") or {}), "hostname": pod_name}
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        annotations = dict((template.get("metadata") or {}).get("annotations") or {})
        markers = self.custom.list_namespaced_custom_object(
            PODPROBEMARKERS[0], PODPROBEMARKERS[1], meta["namespace"], PODPROBEMARKERS[2]
        )["items"]
        annotations.update(podprobe_annotations(markers, labels, pod_spec))
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": f"{KRUISE_GROUP}/v1beta1",
                        "kind": "StatefulSet",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
        }
        try:
            created = self.core.create_namespaced_pod(meta["namespace"], body)
        except ApiException as e:
            if e.status != 409:
                raise
            created = self.core.read_namespaced_pod(pod_name, meta["namespace"])
        pod: dict[str, Any] = self.api.sanitize_for_serialization(created)
        return pod

    def _delete_pod(self, namespace: str, pod: Mapping[str, Any]) -> None:
        """Delete the Pod, then the GameServer it owns (the garbage collector's part)."""
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise
        try:
            gs = self.custom.get_namespaced_custom_object(*GAMESERVERS[:2], namespace,
                                                          GAMESERVERS[2], name)  # fmt: skip
        except ApiException as e:
            if e.status == 404:
                return
            raise
        if any(ref.get("uid") == uid for ref in gs["metadata"].get("ownerReferences") or ()):
            try:
                self.custom.delete_namespaced_custom_object(*GAMESERVERS[:2], namespace,
                                                            GAMESERVERS[2], name)  # fmt: skip
            except ApiException as e:
                if e.status != 404:
                    raise

    def _mark_ready(self, pod: Mapping[str, Any]) -> None:
        """Running, every kubelet condition and readiness gate True, containers ready."""
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        gates = [g["conditionType"] for g in spec.get("readinessGates") or ()]
        have = {c["type"]: c.get("status") for c in status.get("conditions") or ()}
        wanted = [*KUBELET_CONDITIONS, *gates]
        if status.get("phase") == "Running" and all(have.get(t) == "True" for t in wanted):
            return
        now = _now()
        body = {
            "status": {
                "phase": "Running",
                "startTime": status.get("startTime") or now,
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": now} for t in wanted
                ],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c.get("image", ""),
                        "imageID": "",
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": now}},
                    }
                    for c in spec.get("containers") or ()
                ],
            }
        }
        meta = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body)
        except ApiException as e:
            if e.status != 404:
                raise

    @staticmethod
    def _revision(asts: Mapping[str, Any]) -> str:
        return f"{asts['metadata']['name']}-{asts['metadata'].get('generation', 1)}"

    def _update_status(self, asts: Mapping[str, Any], ready: int, label_selector: str) -> None:
        """All live Pods are Running/Ready and current (nothing updates them in place)."""
        revision = self._revision(asts)
        status = {
            "observedGeneration": asts["metadata"].get("generation", 1),
            "replicas": ready,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": ready,
            "updatedReplicas": ready,
            "updatedReadyReplicas": ready,
            "updatedAvailableReplicas": ready,
            "currentRevision": revision,
            "updateRevision": revision,
            "labelSelector": label_selector,
        }
        current = asts.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        meta = asts["metadata"]
        try:
            self.custom.patch_namespaced_custom_object_status(
                *STATEFULSETS[:2], meta["namespace"], STATEFULSETS[2], meta["name"],
                {"status": status},
            )  # fmt: skip
        except ApiException as e:
            if e.status != 404:
                raise


class PodProbeMarkerController:
    """kruise-manager's status of each PodProbeMarker: `observedGeneration`, `matchedPods`."""

    name = "podprobemarkers"

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self.core = k8s.CoreV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    def watches(self) -> Iterable[Watch]:
        def list_markers(**kwargs: Any) -> Any:
            return self.custom.list_cluster_custom_object(*PODPROBEMARKERS, **kwargs)

        def key(obj: dict[str, Any]) -> Iterable[Key]:
            meta = obj.get("metadata") or {}
            return [(str(meta.get("namespace", "")), str(meta.get("name", "")))]

        return [Watch(list_markers, key)]

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        group, version, plural = PODPROBEMARKERS
        try:
            marker = self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
        except ApiException as e:
            if e.status == 404:
                return
            raise
        pods = self.core.list_namespaced_pod(namespace).items
        selector = (marker.get("spec") or {}).get("selector")
        matched = sum(1 for p in pods if selects(selector, p.metadata.labels or {}))
        status = {"observedGeneration": marker["metadata"].get("generation", 1),
                  "matchedPods": matched}  # fmt: skip
        if all((marker.get("status") or {}).get(k) == v for k, v in status.items()):
            return
        try:
            self.custom.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, {"status": status}
            )
        except ApiException as e:
            if e.status != 404:
                raise


@dataclass
class _Queue:
    """Keys waiting to be reconciled, each at most once."""

    pending: set[Key] = field(default_factory=set)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, keys: Iterable[Key]) -> None:
        with self.cond:
            self.pending.update(keys)
            self.cond.notify()

    def take(self, timeout: float) -> Key | None:
        with self.cond:
            if not self.pending:
                self.cond.wait(timeout)
            return self.pending.pop() if self.pending else None


class StandIn:
    """Runs controllers (default: `StatefulSetController` and `PodProbeMarkerController`) with
    the identity of `kubeconfig` in background threads: `start()`, `stop()`, or use it with
    `with`.

    `errors` collects the exceptions reconciles raised (each is retried after `RETRY_SECONDS`);
    a test may assert it stays empty.
    """

    def __init__(
        self,
        kubeconfig: Path,
        controllers: Callable[[k8s.ApiClient], list[Controller]] | None = None,
    ) -> None:
        self.api = api_client_from_kubeconfig(kubeconfig)
        make = controllers or (
            lambda api: [StatefulSetController(api), PodProbeMarkerController(api)]
        )
        self.controllers = make(self.api)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> StandIn:
        for controller in self.controllers:
            queue = _Queue()
            for spec in controller.watches():
                self._spawn(f"watch-{controller.name}", self._watch_loop, spec, queue)
            self._spawn(f"work-{controller.name}", self._work_loop, controller, queue)
        return self

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"standin-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(WATCH_SECONDS + 3)
        self.api.close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch_loop(self, spec: Watch, queue: _Queue) -> None:
        """List, then watch from the list's resourceVersion; relist after 410 or an error."""
        while not self._stop.is_set():
            try:
                listed = spec.list_func()
                items = listed["items"] if isinstance(listed, dict) else listed.items
                version = (
                    listed["metadata"]["resourceVersion"]
                    if isinstance(listed, dict)
                    else listed.metadata.resource_version
                )
                for item in items:
                    queue.add(spec.keys(self._as_dict(item)))
                self._follow(spec, queue, version)
            except Exception as e:  # relist after any failure; the cluster may be stopping
                if not self._stop.is_set():
                    log.debug("stand-in watch failed, relisting: %s", e)
                    self._stop.wait(RETRY_SECONDS)

    def _follow(self, spec: Watch, queue: _Queue, version: str) -> None:
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                spec.list_func,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
            )
            for event in stream:
                obj = self._as_dict(event["object"])
                if event["type"] == "ERROR":
                    return  # e.g. 410 Gone: relist
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event["type"] != "BOOKMARK":
                    queue.add(spec.keys(obj))

    def _as_dict(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, dict):
            return obj
        data: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return data

    def _work_loop(self, controller: Controller, queue: _Queue) -> None:
        while not self._stop.is_set():
            key = queue.take(timeout=0.2)
            if key is None:
                continue
            try:
                controller.reconcile(key)
            except Exception as e:  # retried: the next event or this retry fixes it
                if self._stop.is_set():
                    return
                self.errors.append(e)
                log.warning("stand-in %s %s/%s failed, retrying: %s", controller.name, *key, e)
                self._stop.wait(RETRY_SECONDS)
                queue.add([key])
