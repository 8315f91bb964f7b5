"""In-pod entry point: `python -m agentry_workspace` reads the mounted config (see README)."""

import sys

from .app import pod_main

sys.exit(pod_main())
