"""The probe kit: what every probing plugin shares (http_probe, contrib tcp_probe, yours).

* ``timing`` — the config fields: ``startDelaySeconds`` and ``probeIntervalSeconds`` for the
  plugin (:class:`~kidecar_core.ProbeSchedule`), ``timeout``, ``successThreshold`` and
  ``failureThreshold`` for each endpoint (:class:`~kidecar_core.ProbeTiming`);
* ``thresholds`` — the Kubernetes-probe threshold machine, from probe outcomes to an endpoint's
  *effective* state (:class:`~kidecar_core.ProbeThresholds`);
* ``loop`` — one endpoint probed at its period in a task of its own, counted in metrics, its
  effective state handed to the plugin on change (:class:`~kidecar_core.ProbeLoop`).

Plugins import these names from ``kidecar_core``; this package is private.
"""
