"""What to tell a user whose ``processName`` matches no process.

Configs written for the Go predecessor often name just the binary (``processName: game``): Go
matched a substring of ``ps aux``, which also matched PID 1, the sidecar and any process that
mentioned the name. kidecar matches the whole command line, and never falls back to a substring;
instead the failure lists the visible command lines closest to ``processName`` and suggests a
``processNameRegex`` that matches the binary with any arguments.

Command lines may carry secrets (``--password=...``, URLs with tokens): they are shown redacted
and shortened.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from kidecar_core import redact_text

MAX_SHOWN = 3
MAX_CHARS = 160
_SECRET_ARG = re.compile(
    r"(?i)((?:^|\s)-{0,2}[\w.-]*(?:pass|secret|token|key|auth|cred)[\w.-]*(?:=|\s+))\S+"
)


def closest(process_name: str, cmdlines: Sequence[str], n: int = MAX_SHOWN) -> list[str]:
    """The command lines most likely meant by ``process_name``, best first.

    First those whose program (the first argument, with or without its directory) is
    ``process_name``, then those with ``process_name`` as a word, then similar ones.
    """
    name = process_name.strip()
    scored: list[tuple[int, float, str]] = []
    for cmdline in dict.fromkeys(cmdlines):  # unique, in order
        words = cmdline.split()
        program = words[0] if words else ""
        if program == name or program.rsplit("/", 1)[-1] == name:
            rank = 0
        elif name in words or any(w.rsplit("/", 1)[-1] == name for w in words):
            rank = 1
        elif name and name in cmdline:
            rank = 2
        else:
            rank = 3
        similarity = difflib.SequenceMatcher(None, name, cmdline[: len(name) * 3]).ratio()
        if rank < 3 or similarity >= 0.6:
            scored.append((rank, -similarity, cmdline))
    scored.sort()
    return [cmdline for _, _, cmdline in scored[:n]]


def binary_regex(process_name: str) -> str:
    """A ``processNameRegex`` for "this program, from any directory, with any arguments"."""
    return rf"(\S*/)?{re.escape(process_name.strip())}( .*)?"


def yaml_quoted(text: str) -> str:
    """``text`` as a YAML single-quoted scalar (backslashes stay as they are)."""
    return "'" + text.replace("'", "''") + "'"


def shown(cmdline: str) -> str:
    """A command line as it may appear in an error: secrets masked, at most MAX_CHARS."""
    text = _SECRET_ARG.sub(lambda m: f"{m.group(1)}***", redact_text(cmdline))
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3] + "..."


def hint(process_name: str, regex: bool, cmdlines: Sequence[str]) -> str:
    """What to add to a "no process" error: the closest command lines and what to configure
    (empty when no command line is close)."""
    near = closest(process_name, cmdlines)
    if not near:
        return ""
    listing = ", ".join(repr(shown(c)) for c in near)
    if regex:
        advice = "the regular expression must match the whole command line (re.fullmatch)"
    else:
        advice = (
            "processName must equal the whole command line as `ps -o args` shows it; to match "
            f"{process_name.strip()!r} with any arguments, set processNameRegex: true and "
            f"processName: {yaml_quoted(binary_regex(process_name))} (YAML)"
        )
    return f"closest command lines: {listing}; {advice}"
