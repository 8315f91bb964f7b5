"""Stands in for the `claude` CLI: logs how it was called, replays a recorded stream-json file."""

import json
import os
import sys
import time

log = {
    "argv": sys.argv[1:],
    "stdin": sys.stdin.read(),
    "cwd": os.getcwd(),
    "home": os.environ.get("HOME"),
    "base_url": os.environ.get("ANTHROPIC_BASE_URL"),
    "has_key": bool(os.environ.get("ANTHROPIC_API_KEY")),
    "openai_key_leaked": "OPENAI_API_KEY" in os.environ,
}
with open(os.environ["FAKE_CLAUDE_LOG"], "w") as fh:
    json.dump(log, fh)
with open(os.environ["FAKE_CLAUDE_TRANSCRIPT"]) as fh:
    for line in fh:
        print(line.rstrip("\n"), flush=True)
        time.sleep(float(os.environ.get("FAKE_CLAUDE_PAUSE", "0")))
print(os.environ.get("FAKE_CLAUDE_STDERR", ""), file=sys.stderr)
time.sleep(float(os.environ.get("FAKE_CLAUDE_HANG", "0")))
sys.exit(int(os.environ.get("FAKE_CLAUDE_EXIT", "0")))
