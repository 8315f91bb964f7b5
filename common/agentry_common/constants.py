"""Names that every component must agree on: API group, labels, annotations, finalizers."""

from typing import Final

GROUP: Final = "agentry.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

AGENT_KIND: Final = "Agent"
AGENT_PLURAL: Final = "agents"
EXECUTION_KIND: Final = "Execution"
EXECUTION_PLURAL: Final = "executions"

# Labels put on every child object so `kubectl get jobs -l agentry.dev/agent=x` works.
LABEL_AGENT: Final = f"{GROUP}/agent"
LABEL_EXECUTION: Final = f"{GROUP}/execution"
LABEL_TRIGGER: Final = f"{GROUP}/trigger"
LABEL_PARENT: Final = f"{GROUP}/parent"  # a follow-up's parent Execution (set by the operator)
LABEL_OWNER: Final = f"{GROUP}/owner"  # hash of the owning user (API); budgets by user
# The kind of the owning user when the owner's quotas differ (value OWNER_KIND_GUEST); set by the API
# with the owner label and guarded like it (docs/security.md, "Who may start a run").
LABEL_OWNER_KIND: Final = f"{GROUP}/owner-kind"
OWNER_KIND_GUEST: Final = "guest"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "agentry-operator"
# A draft run once from the chat designer ("try it"): on its hidden Agent and its Execution. The API
# never stores such an Agent as the user's and deletes it (its run with it) once the run has ended.
LABEL_TRIAL: Final = f"{GROUP}/trial"
TRIAL_NAME_PREFIX: Final = "trial-"

ANNOTATION_CORRELATION_ID: Final = f"{GROUP}/correlation-id"
# Full Execution name on Jobs and Pods (label values are cut at 63 characters).
ANNOTATION_EXECUTION: Final = f"{GROUP}/execution"
# The operator's own finalizer and kopf progress-annotation prefix.
FINALIZER: Final = f"operator.{GROUP}/finalizer"
KOPF_ANNOTATION_PREFIX: Final = f"operator.{GROUP}"

# Contract between the operator and the workspace runtime (see workspace_image/README.md).
WORKSPACE_CONFIG_DIR: Final = "/etc/agentry"
AGENT_FILE: Final = "agent.json"
INPUT_FILE: Final = "input.txt"
RESULT_FILE: Final = "/dev/termination-log"
RESUME_FILE: Final = "resume.json"  # in WORKSPACE_CONFIG_DIR when a paused run resumes
WORKSPACE_DIR: Final = "/workspace"
ENV_CORRELATION_ID: Final = "AGENTRY_CORRELATION_ID"
ENV_EXECUTION: Final = "AGENTRY_EXECUTION"
ENV_AGENT: Final = "AGENTRY_AGENT"
ENV_NAMESPACE: Final = "AGENTRY_NAMESPACE"
ENV_DEADLINE: Final = "AGENTRY_DEADLINE_SECONDS"
# The egress proxy's URL in run pods (docs/security.md, "Egress"): the http tool sends through it after
# its own checks; tools that honour HTTP(S)_PROXY get the same URL there.
ENV_EGRESS_PROXY: Final = "AGENTRY_EGRESS_PROXY"

# Environment names the platform sets or relies on in a run's container: an Agent's spec.secrets may
# not use them (the Agent CRD refuses them; the Job builder leaves such entries out too), so that a
# secret cannot shadow the gateway URL, the proxy, the run's identity or the loader's search paths.
RESERVED_ENV_PREFIXES: Final = ("AGENTRY_", "OTEL_")
RESERVED_ENV: Final = (
    "HOME",
    "PATH",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
)


def is_reserved_env(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


# How long the API and the gateway keep an idle client connection open. It must outlast every client's
# own idle limit (httpx drops its connections after 5 s, Google's load balancers after 600 s): a server
# that closes first races the client's next request on that connection, which then fails with
# "server disconnected" (uvicorn's default is 5 s, the same as httpx's).
SERVER_KEEP_ALIVE_SECONDS: Final = 620
