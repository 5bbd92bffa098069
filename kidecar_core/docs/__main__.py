"""``python -m kidecar_core.docs``: write the configuration and hook references."""

import sys

from kidecar_core.docs import main

sys.exit(main())
