"""The runs' controller: the operator's own Kubernetes client, informer, work queue and leader election.

- client.py, transport.py, gate.py, wire.py: one lightkube client whose requests go through aiohttp
  with a bound on requests in flight, and beside it the hot path's requests (children created,
  statuses merge-patched) and the informer's watches on the same credentials.
- informer.py: list and watch of Executions, Jobs and Pods (and Namespaces, for patterns:
  namespaces.py), each event handed on in order per object; handlers/state.py is its store.
- queue.py: the key -> reconcile -> requeue-after loop of the Executions, with retries and back-off.
- leader.py, replicas.py: Lease election among replicas; the Lease holder reconciles.

kopf keeps what is not a run: Agents, Workflows, WorkflowRuns, the admission webhooks, probes,
start-up and clean-up (docs/operator.md).
"""
