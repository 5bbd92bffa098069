"""The kubernetes client's few modules without its package imports (issue 17: idle memory).

Each test runs a fresh interpreter: what is imported is a property of the whole process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _run(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True, timeout=60, env=env,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_store_loads_only_the_modules_it_uses() -> None:
    got = _run(
        "import json, sys\n"
        "import kidecar_core._store.kube\n"
        "mods = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('kubernetes', 'requests', 'oauthlib', 'requests_oauthlib', 'websocket', 'pydantic',"
        " 'dateutil'))\n"
        "print(json.dumps({'modules': mods}))\n"
    )
    modules = got["modules"]
    assert isinstance(modules, list)
    assert "kubernetes.client.rest" in modules
    assert "kubernetes.config.incluster_config" in modules
    unwanted = [
        m
        for m in modules
        if m.startswith(
            ("kubernetes.client.api.", "kubernetes.client.models.", "kubernetes.dynamic")
        )
        or m.startswith(("kubernetes.watch", "kubernetes.stream", "kubernetes.leaderelection"))
        or m.split(".")[0] in ("requests", "oauthlib", "requests_oauthlib", "websocket")
        or m in ("kubernetes.config.kube_config", "kubernetes.client.api_client")
        or m.split(".")[0] in ("pydantic", "dateutil")
    ]
    assert unwanted == []


def test_the_whole_client_still_works_in_the_same_process() -> None:
    got = _run(
        "import json\n"
        "from kidecar_core._store import k8s_client\n"
        "import kubernetes\n"
        "from kubernetes import client, config, watch\n"
        "from kubernetes.client.models import V1Pod\n"
        "print(json.dumps({'version': kubernetes.__version__,\n"
        "    'api': client.CoreV1Api.__name__, 'model': V1Pod.__name__,\n"
        "    'same': client.Configuration is k8s_client.Configuration,\n"
        "    'watch': watch.Watch.__name__, 'load': config.load_kube_config.__name__}))\n"
    )
    assert got["api"] == "CoreV1Api" and got["model"] == "V1Pod" and got["same"] is True
    assert got["watch"] == "Watch" and got["load"] == "load_kube_config"
    assert isinstance(got["version"], str) and got["version"]


def test_the_kubeconfig_loader_is_imported_at_its_first_use() -> None:
    got = _run(
        "import json, sys\n"
        "from kidecar_core._store import k8s_client\n"
        "before = 'kubernetes.config.kube_config' in sys.modules\n"
        "loader = k8s_client.kube_config()\n"
        "print(json.dumps({'before': before, 'after': loader.__name__}))\n"
    )
    assert got == {"before": False, "after": "kubernetes.config.kube_config"}


def test_kidecar_run_imports_no_kubernetes_client_before_it_needs_one() -> None:
    # Local mode never needs it; the API-server mode imports it when it builds its store.
    got = _run(
        "import json, sys\n"
        "import kidecar_core.cli, kidecar_core._runtime.bootstrap\n"
        "from importlib.metadata import entry_points\n"
        "for ep in entry_points(group='kidecar'): ep.load()\n"
        "print(json.dumps({'loaded': sorted(m for m in sys.modules if m.split('.')[0] in "
        "('kubernetes', 'urllib3') or m == 'kidecar_core._store.kube')}))\n"
    )
    assert got == {"loaded": []}


def test_the_environment_proxy_is_resolved_once_and_kept() -> None:
    """The refresh hook re-assigns ``host`` before every request; with the proxy pinned that no
    longer parses the proxy environment each time, and the environment's proxy and
    ``NO_PROXY`` are still the configuration's."""
    proxies = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    env = {k: v for k, v in os.environ.items() if k.lower() not in proxies}
    env.update(HTTPS_PROXY="http://proxy.example:3128", NO_PROXY="internal.example")
    got = _run(
        "import json\n"
        "from kidecar_core._store import k8s_client as k8s\n"
        "import kubernetes.client.configuration as conf\n"
        "c = k8s.Configuration(host='https://api.example:6443')\n"
        "k8s.RestClient(c, 'kidecar')\n"
        "calls = []\n"
        "real = conf.getproxies\n"
        "conf.getproxies = lambda: calls.append(1) or real()\n"
        "for _ in range(3):\n"
        "    c.host = 'https://api.example:6443'\n"
        "print(json.dumps({'proxy': c.proxy, 'no_proxy': c.no_proxy, 'parsed': len(calls)}))\n",
        env,
    )
    assert got == {
        "proxy": "http://proxy.example:3128",
        "no_proxy": "internal.example",
        "parsed": 0,
    }
