"""The warm pool (docs/runs.md, "Warm pool"): pre-started run pods that an Execution claims.

`builders.py` is pure (the warm Job, a run's profile, the claim's patches and payload); `pools.py`
keeps each pool's warm pods and sizes the pools; `claim.py` is the claim protocol that
handlers/execution.py runs in place of creating a Job.
"""
