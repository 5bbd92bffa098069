"""``kidecar inject``: adding the sidecar to workload manifests (pure functions on parsed YAML)."""
