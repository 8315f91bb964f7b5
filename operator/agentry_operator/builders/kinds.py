"""The parts of Kubernetes objects the operator reads and writes, as typed shapes of their JSON
(camelCase keys, every key optional): Jobs, Pods and Executions as the API server sends them, read
without lightkube's models, and the pieces of the manifests it builds (env, owner references)."""

from __future__ import annotations

from typing import TypedDict


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class Meta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    resourceVersion: str
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]


class Condition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str


class JobSpec(TypedDict, total=False):
    activeDeadlineSeconds: int
    backoffLimit: int


class JobStatus(TypedDict, total=False):
    conditions: list[Condition]
    startTime: str
    completionTime: str
    active: int
    failed: int
    succeeded: int


class Job(TypedDict, total=False):
    metadata: Meta
    spec: JobSpec
    status: JobStatus


class Terminated(TypedDict, total=False):
    exitCode: int
    reason: str
    message: str


class Waiting(TypedDict, total=False):
    reason: str
    message: str


class ContainerState(TypedDict, total=False):
    waiting: Waiting
    terminated: Terminated


class ContainerStatus(TypedDict, total=False):
    name: str
    state: ContainerState
    lastState: ContainerState


class SecretKeySelector(TypedDict, total=False):
    name: str
    key: str
    optional: bool


class EnvVarSource(TypedDict, total=False):
    secretKeyRef: SecretKeySelector


class EnvVar(TypedDict, total=False):
    name: str
    value: str
    valueFrom: EnvVarSource


class Container(TypedDict, total=False):
    name: str
    env: list[EnvVar]


class PodSpec(TypedDict, total=False):
    containers: list[Container]


class PodStatus(TypedDict, total=False):
    phase: str
    reason: str
    message: str
    startTime: str
    conditions: list[Condition]
    containerStatuses: list[ContainerStatus]


class Pod(TypedDict, total=False):
    metadata: Meta
    spec: PodSpec
    status: PodStatus


class UsageRead(TypedDict, total=False):
    inputTokens: int
    outputTokens: int
    costUSD: str


class NameRef(TypedDict, total=False):
    name: str


class RunSpec(TypedDict, total=False):
    """An Execution's spec, the fields read from the watch's copy."""

    agentRef: NameRef
    trigger: str
    scheduledTime: str
    cancel: bool


class RunStatus(TypedDict, total=False):
    """An Execution's status, the fields read from the watch's copy (written as ExecutionStatus)."""

    phase: str
    reason: str
    startTime: str
    completionTime: str
    jobName: str
    usage: UsageRead
    mcp: dict[str, object]


class Run(TypedDict, total=False):
    """An Execution as the watch keeps it."""

    metadata: Meta
    spec: RunSpec
    status: RunStatus
