"""kidecar's error vocabulary.

Errors that reach a user name the plugin, the config path and what to do; they never carry a
traceback for a user mistake.  Persistence errors are split into *transient* (retry with backoff:
the API server is away, overloaded or answered 5xx) and *permanent* (retrying the same write cannot
help until something outside kidecar changes: RBAC, an invalid value, a missing object).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs


class KidecarError(Exception):
    """Base class of every error kidecar raises on purpose."""


@attrs.frozen
class Problem:
    """One configuration problem: where (``plugins[1].config.timeout``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(KidecarError):
    """The configuration is invalid.  Carries *every* problem found, each with its path."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, path: str, message: str) -> ConfigError:
        return cls([Problem(path, message)])

    def prefixed(self, prefix: str) -> ConfigError:
        """The same problems, with ``prefix`` put in front of each path."""
        return ConfigError(Problem(join_path(prefix, p.path), p.message) for p in self.problems)


def join_path(prefix: str, path: str) -> str:
    """Join config paths: ``join_path("plugins[0]", "config")`` → ``plugins[0].config``."""
    if not prefix:
        return path
    if not path:
        return prefix
    if path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


class StartupError(KidecarError):
    """kidecar cannot start: a plugin is missing or broken, no cluster was chosen, ..."""


class PersistError(KidecarError):
    """Writing to an object store (the Kubernetes API or the local state file) failed."""


class TransientPersistError(PersistError):
    """Retry later: connection refused/reset, timeouts, 429, 5xx.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    retry_after: float | None = None


class ConflictError(TransientPersistError):
    """409: the object changed under us (or already exists); re-read and retry."""


class PermanentPersistError(PersistError):
    """Retrying the same write cannot succeed until something else changes."""


class NotFoundError(PermanentPersistError):
    """404: the object does not exist (yet: a GameServer is created after its pod)."""


class ForbiddenError(PermanentPersistError):
    """403: RBAC denies the request.  ``rule`` names what is missing."""

    def __init__(self, message: str, *, verb: str, group: str, resource: str) -> None:
        super().__init__(message)
        self.verb = verb
        self.group = group
        self.resource = resource

    @property
    def rule(self) -> str:
        group = self.group or '""'
        return f"verb={self.verb} apiGroup={group} resource={self.resource}"


class InvalidError(PermanentPersistError):
    """422 (or 400): the server rejected the values, e.g. an invalid label value."""
