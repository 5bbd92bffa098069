"""After a restart: re-apply the last applied version of this pod, or of its workload.

Runs once per sidecar process, in a plugin task: it waits for this pod's UID and workload, reads
the result ConfigMap (both retried while the API server is away), chooses the record
(:func:`.record.choose_replay`) and applies it under the update lock as trigger ``replay``. An
update applied through the API in the meantime supersedes it. Failures are recorded like any
update's and never crash the plugin.
"""

from __future__ import annotations

import logging
import time

from kidecar_core import redact_url
from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.record import choose_replay, read_retrying
from kidecar_plugins.hot_update.updater import HotUpdater, UpdateRequest

log = logging.getLogger("kidecar.plugin.hot_update")


async def replay_last_update(updater: HotUpdater) -> None:
    generation = updater.generation
    await updater.pod_known.wait()
    assert updater.pod is not None
    record = await read_retrying(
        updater.ctx, updater.configmap, "to replay the last hot update", required=False
    )
    choice = choose_replay(record, updater.pod)
    if choice is None:
        log.info("no hot update recorded for this pod or its workload: nothing to replay")
        updater.replayed = True
        return
    applied, why = choice
    async with updater.lock:
        updater.replayed = True
        if updater.generation != generation:
            log.info("not replaying %s: a newer update was applied meanwhile", applied.version)
            return
        log.info("re-applying %s, %s, from %s", applied.version, why, redact_url(applied.url))
        try:
            req = UpdateRequest.create(
                applied.version,
                applied.url,
                applied.sha256 or None,
                recorded_without_credentials=applied.url_redacted,
            )
        except UpdateError as e:
            log.error("cannot replay the recorded hot update %s: %s", applied.version, e)
            updater.count(e.label, "replay")
            return
        deadline = time.monotonic() + updater.config.wait_for_process_seconds
        try:
            await updater.apply(req, "replay", deadline=deadline)
        except UpdateError as e:  # recorded by apply()
            updater.count(e.label, "replay")
        else:
            updater.count("success", "replay")
