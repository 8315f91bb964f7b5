"""Workflows: pure builders (graph checks, templates, the next-step planner, the run's status) and
the lightkube classes of the two resources. The I/O is in handlers/workflow.py."""
