"""The runtime that drives the data path, composed of small parts: :mod:`.bootstrap` (what the
commands do, building the runtime), :mod:`.runtime` (the orchestrator and its teardown stack),
:mod:`.supervisor` (plugin tasks, restart policy), :mod:`.pipeline` (results → write plan →
applier), :mod:`.servers` (admin and plugin HTTP servers), :mod:`.shutdown` (signals, the
budget), :mod:`.context` (the runtime's ``PluginContext``) and :mod:`.logs`.
"""
