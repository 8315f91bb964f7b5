"""`python -m agentry_cli` is `agentry`."""

import sys

from .main import main

sys.exit(main())
