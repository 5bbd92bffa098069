"""Helpers of the recipe tests: import a recipe from its file, describe ``tp_filestate``."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from kidecar_core.testing import Sidecar

ROOT = Path(__file__).resolve().parents[3]
OVERRIDES = ROOT / "contrib" / "overrides"

RunSidecar = Callable[..., Sidecar]
"""The ``run_sidecar`` fixture: ``run_sidecar(config, "recipe.py", ..., env={...})``."""


def load_recipe(name: str) -> ModuleType:
    """Import ``contrib/overrides/<name>.py`` the way ``--plugin-file`` does: from its path."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", OVERRIDES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def filestate(path: Path, storage: Mapping[str, Any] | None, interval: float = 0.05) -> Any:
    """A ``plugins[]`` entry for ``tp_filestate`` reading its state from ``path``."""
    config: dict[str, Any] = {"path": str(path), "interval": interval}
    if storage is not None:
        config["storageConfig"] = dict(storage)
    return {"name": "tp_filestate", "config": config}


def opsstate_policies(**policies: str) -> dict[str, Any]:
    """``InKube`` storage whose marker policies map states to GameServer opsStates."""
    return {
        "type": "InKube",
        "inKube": {
            "markerPolicies": [
                {"state": state, "gameServerOpsState": ops} for state, ops in policies.items()
            ]
        },
    }
