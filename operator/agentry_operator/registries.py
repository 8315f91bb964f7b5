"""The operator's two kopf registries: what only the leader runs, and what every replica serves.

One replica (the default) runs both in one kopf operator. With leader election, every replica serves
WEBHOOKS and only the Lease holder runs RECONCILE (controller/replicas.py).
"""

from __future__ import annotations

import kopf

RECONCILE = kopf.OperatorRegistry()  # resource handlers, the background loop, the probe
WEBHOOKS = kopf.OperatorRegistry()  # admission (validating webhooks)
