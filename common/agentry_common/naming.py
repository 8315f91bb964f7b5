"""Deterministic names of the objects Agentry creates. One place, so every component agrees.

Names are derived only from the owner's name and UID: running a reconcile twice, or after a crash,
computes the same name, and a re-created owner of the same name (new UID) never collides with a child
of its predecessor that is still being deleted.
"""

import hashlib

# Job names end up in the `job-name` label of its pods, and label values are at most 63 characters.
_MAX_JOB = 63
# CronJob controller appends "-<11 digit timestamp>" to the Job names it creates: 52 + 11 = 63.
_MAX_CRONJOB = 52


def short_hash(value: str, length: int = 6) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def _fit(prefix: str, suffix: str, limit: int) -> str:
    room = limit - len(suffix) - 1
    return f"{prefix[:room].rstrip('-.')}-{suffix}"


def job_name(execution_name: str, execution_uid: str) -> str:
    """The one Job of an Execution (also names its ConfigMap)."""
    return _fit(execution_name, short_hash(execution_uid), _MAX_JOB)


def cronjob_name(agent_name: str, agent_uid: str) -> str:
    return _fit(f"agentry-{agent_name}", short_hash(agent_uid), _MAX_CRONJOB)


def scheduled_execution_name(agent_name: str, scheduled_unix: int) -> str:
    """Name of the Execution a schedule tick creates; the same tick always yields the same name."""
    return _fit(agent_name, str(scheduled_unix), _MAX_JOB)


def token_secret_name(job: str) -> str:
    """The Secret holding the run token of one Job (governed runs): one per Job, resumes included."""
    return f"{job}-token"
