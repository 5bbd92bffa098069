"""``python -m kidecar_core._docs``: write the configuration and hook references."""

import sys

from kidecar_core._docs import main

sys.exit(main())
