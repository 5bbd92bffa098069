"""Built-in plugin ``pod_probe``: Kruise's PodProbeMarker probes on virtual nodes."""
