"""Stage 4 of the data path: where objects live.

The :class:`~.objects.ObjectStore` protocol and its two implementations: the Kubernetes API
(:mod:`.kube`, the only module that imports ``kubernetes``) and the local state file
(:mod:`.local`); Events about the pod (:mod:`.events`).
"""
