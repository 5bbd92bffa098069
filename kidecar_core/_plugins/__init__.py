"""Stage 2 of the data path: plugins.

Finding and loading plugins (:mod:`.manager`, the only caller of ``pm.hook``), what they see of
the runtime (:mod:`.context`), the registries their register hooks fill (:mod:`.registry`) and the
core's own hook implementations (:mod:`.corehooks`).
"""
