"""``python -m kidecar_core`` is ``kidecar``."""

from kidecar_core.cli import main

raise SystemExit(main())
