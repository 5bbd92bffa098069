"""The sidecar's part of ``kidecar rollout``: follow the workload's desired version and get there
through hot_update's own verified, atomic update, at most ``slots`` pods at a time.

* :mod:`.config`: the ``rollout`` section of hot_update's config;
* :mod:`.follow`: following an object (the core's watch; polling when the Role forbids it);
* :mod:`.slots`: the slots (``coordination.k8s.io`` Leases) that bound how many pods update at once;
* :mod:`.probes`: the pod's probe results during the verification window;
* :mod:`.follower`: the state machine of one pod; :mod:`.run`: one update under a slot;
* :mod:`.check`: ``kidecar rollout start``'s check of a target against this config.
"""
