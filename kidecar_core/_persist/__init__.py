"""Stage 3 of the data path: persistence.

A plugin's :class:`~.result.Result` becomes :class:`~.write.Write` operations (storage backends
contribute them in ``kidecar_persist``), collected and checked in a :class:`~.plan.WritePlan`,
which the :mod:`.applier` merges into the desired state of each object and writes as one patch
per object, only on change (:mod:`.status`: how that goes, per object).
"""
