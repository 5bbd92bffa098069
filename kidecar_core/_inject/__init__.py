"""``kidecar inject``: adding the sidecar to workload manifests (:mod:`.command`, then pure
functions on parsed YAML in :mod:`.inject` and :mod:`.podedit`)."""
