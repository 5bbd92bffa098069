"""The kube tests run kidecar with the test plugin distribution too."""

from tests.core.conftest import testplugins_env

__all__ = ["testplugins_env"]
