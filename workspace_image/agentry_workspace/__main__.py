"""In-pod entry point: `python -m agentry_workspace` reads the mounted config (see README).

A SIGTERM before the run has started (its imports take seconds) ends the pod with INTERRUPTED: nothing
is done or journaled yet, so the run's next Job starts it again (the run installs its own handler,
which finishes the current step, as soon as it starts).

The process ends without the interpreter's teardown: freeing the provider SDKs' modules takes about a
second after the run has ended (`python -m bench.run_starts`). By then the result file is written and
closed and the tracer is shut down; what is left buffered (the event lines, log handlers) is flushed
here first.
"""

import os
import signal

from agentry_common.exitcodes import ExitCode

signal.signal(signal.SIGTERM, lambda _signum, _frame: os._exit(ExitCode.INTERRUPTED))

import logging  # noqa: E402  (after the handler: the imports below are the slow part of a start)
import sys  # noqa: E402

if "--warm" in sys.argv[1:]:  # a warm pool's pod: waits for its claim first (warm.py)
    from .warm import warm_main

    code = warm_main()
else:
    from .app import pod_main

    code = pod_main()
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
