"""In-pod entry point: `python -m agentry_workspace` reads the mounted config (see README).

The process ends without the interpreter's teardown: freeing the provider SDKs' modules takes about a
second after the run has ended (`python -m bench.run_starts`). By then the result file is written and
closed and the tracer is shut down; what is left buffered (the event lines, log handlers) is flushed
here first.
"""

import logging
import os
import sys

from .app import pod_main

code = pod_main()
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
