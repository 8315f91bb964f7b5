"""The Agentry workspace runtime: the program every Execution's pod runs.

Entry points: `python -m agentry_workspace` (in the pod, see workspace_image/README.md) and
`agentry run -f agent.yaml` (cli.py). Flow: config -> app -> runner (or claude_code) -> outcome.
The LLM providers live in agentry_llm (shared with the LLM gateway); this package imports no
server code.
"""
