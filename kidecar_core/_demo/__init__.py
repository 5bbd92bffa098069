"""``kidecar demo``: the whole thing working on a laptop, narrated (see :mod:`.runner`)."""
