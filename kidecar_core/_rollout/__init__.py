"""`kidecar rollout`: a hot update rolled across a workload (the document, the command)."""
