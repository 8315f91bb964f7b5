"""Stands in for the `claude` CLI (test_claude_code.py installs it as `claude` on PATH).

Logs how it was called and its whole environment; with FAKE_CLAUDE_CALL set, calls the Messages API
the way the CLI does (ANTHROPIC_BASE_URL + /v1/messages?beta=true, its ANTHROPIC_API_KEY as
x-api-key, streamed) and logs what came back; then replays a recorded stream-json file. Stdlib only.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request


def call_the_model(argv: list[str]) -> dict[str, object]:
    model = argv[argv.index("--model") + 1]
    payload = {
        "model": model,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    request = urllib.request.Request(
        os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages?beta=true",
        data=json.dumps(payload).encode(),
        headers={
            "x-api-key": os.environ.get("ANTHROPIC_API_KEY", ""),
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        },
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as answer:
            lines = answer.read().decode().splitlines()
            status = answer.status
    except urllib.error.HTTPError as err:
        return {"status": err.code, "body": err.read().decode()}
    text = "".join(
        json.loads(line[6:]).get("delta", {}).get("text", "")
        for line in lines
        if line.startswith("data: ") and "text_delta" in line
    )
    return {"status": status, "text": text}


def main() -> int:
    argv = sys.argv[1:]
    log = {
        "argv": argv,
        "stdin": sys.stdin.read(),
        "cwd": os.getcwd(),
        "home": os.environ.get("HOME"),
        "env": dict(os.environ),
    }
    if os.environ.get("FAKE_CLAUDE_CALL"):
        log["call"] = call_the_model(argv)
    with open(os.environ["FAKE_CLAUDE_LOG"], "w") as fh:
        json.dump(log, fh)
    with open(os.environ["FAKE_CLAUDE_TRANSCRIPT"]) as fh:
        for line in fh:
            print(line.rstrip("\n"), flush=True)
            time.sleep(float(os.environ.get("FAKE_CLAUDE_PAUSE", "0")))
    print(os.environ.get("FAKE_CLAUDE_STDERR", ""), file=sys.stderr)
    time.sleep(float(os.environ.get("FAKE_CLAUDE_HANG", "0")))
    return int(os.environ.get("FAKE_CLAUDE_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
