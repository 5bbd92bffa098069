"""Stage 1 of the data path: configuration.

``config.yaml`` is parsed (:mod:`.loader`) and each plugin's section structured into the attrs
class the plugin declares (:mod:`.schema`, the strict cattrs converter).
Every problem is reported at once.
"""
