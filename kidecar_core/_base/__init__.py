"""The base layer, below every stage of the data path: time, periods, backoff, guarded tasks and
metrics.

Everything above uses these (the applier backs off and counts writes, the supervisor restarts
plugins with backoff and ticks them at a period, plugins probe on a period); they import nothing
of kidecar but :mod:`kidecar_core.errors`.
"""
