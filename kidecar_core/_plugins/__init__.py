"""Stage 2 of the data path: plugins.

Finding and loading plugins (:mod:`.manager`, the only caller of ``pm.hook``; it refuses hooks
that do not exist and reports plugins that fail to import), what they see of the runtime
(:mod:`.context`: the ``PluginContext`` and ``RuntimeView`` protocols; :mod:`.state`: typed
per-plugin state), the registries their register hooks fill (:mod:`.registry`), what they need
from the pod (:mod:`.podspec`) and the core's own hook implementations (:mod:`.corehooks`).
"""
