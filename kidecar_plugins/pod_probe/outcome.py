"""What one probe run found, and how it becomes a pod condition's ``status`` and ``message``."""

from __future__ import annotations

import attrs

SUCCEEDED = "Succeeded"
FAILED = "Failed"
"""Kruise's probe states: ``Succeeded`` is condition status ``True``, ``Failed`` is ``False``."""

MAX_OUTPUT_BYTES = 10 * 1024
"""Output read from a probe (each of an exec probe's stdout and stderr, an HTTP answer's
body); the rest is drained and dropped.  The kubelet's limit (``maxReadLength``)."""

MAX_MESSAGE_LENGTH = 1024
"""kruise-daemon's ``maxProbeMessageLength``: a longer message keeps its first 1024 bytes."""


@attrs.frozen
class Outcome:
    """One probe run: success or failure, its output (the condition's message, before
    :func:`condition_message`) and, for the log, why it failed (``exit status 2``)."""

    succeeded: bool
    output: str = ""
    reason: str = ""

    @property
    def state(self) -> str:
        return SUCCEEDED if self.succeeded else FAILED


def condition_message(output: str) -> str:
    """The condition message for a probe's output: surrounding whitespace trimmed, then capped
    as kruise-daemon caps it (more than 1024 characters: the first 1024 bytes, cut at a
    character boundary so that the message stays valid UTF-8).

    OpenKruiseGame compares the message with ``serviceQualities[].serviceQualityAction[].result``
    after removing ``|`` and line breaks, so ``echo idle`` and ``printf idle`` both give ``idle``.
    """
    text = output.strip()
    if len(text) <= MAX_MESSAGE_LENGTH:
        return text
    return text.encode("utf-8")[:MAX_MESSAGE_LENGTH].decode("utf-8", "ignore")


def decode(data: bytes) -> str:
    """Probe output as text (invalid UTF-8 replaced: the API server only stores valid text)."""
    return data.decode("utf-8", "replace")
