"""Workflows: pure builders (graph checks, templates, the next-step planner, the run's status), the
lightkube classes of the two resources, and the loop that serialises and re-wakes each object's
reconciles (loop.py). The I/O is in handlers/workflow.py and handlers/workflow_schedule.py."""
