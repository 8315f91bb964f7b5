{{/* The Grafana dashboard's JSON (docs/observability.md). No Go-template braces inside: legends use
Grafana's automatic names. */}}
{{- define "agentry.monitoring.dashboard" -}}
{
  "title": "Agentry",
  "uid": "agentry-overview",
  "tags": [
    "agentry"
  ],
  "schemaVersion": 39,
  "version": 1,
  "editable": true,
  "time": {
    "from": "now-6h",
    "to": "now"
  },
  "refresh": "1m",
  "templating": {
    "list": [
      {
        "name": "datasource",
        "type": "datasource",
        "query": "prometheus",
        "label": "Prometheus"
      }
    ]
  },
  "panels": [
    {
      "id": 1,
      "type": "row",
      "title": "Runs (operator)",
      "collapsed": false,
      "gridPos": {
        "x": 0,
        "y": 0,
        "w": 24,
        "h": 1
      },
      "panels": []
    },
    {
      "id": 2,
      "type": "timeseries",
      "title": "Executions by phase",
      "description": "Executions the operator knows, by phase.",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 1,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "short"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (phase) (agentry_executions)",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 3,
      "type": "timeseries",
      "title": "Runs ended per hour",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 12,
        "y": 1,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "short"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (phase) (increase(agentry_execution_phase_transitions_total{phase=~\"Succeeded|Failed|Cancelled|Skipped\"}[1h]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 4,
      "type": "timeseries",
      "title": "Reconciles by outcome",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 9,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "reqps"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (kind, outcome) (rate(agentry_reconcile_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 5,
      "type": "timeseries",
      "title": "Reconcile p95",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 12,
        "y": 9,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "histogram_quantile(0.95, sum by (le, kind) (rate(agentry_reconcile_duration_seconds_bucket[5m])))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 6,
      "type": "row",
      "title": "LLM gateway",
      "collapsed": false,
      "gridPos": {
        "x": 0,
        "y": 17,
        "w": 24,
        "h": 1
      },
      "panels": []
    },
    {
      "id": 7,
      "type": "timeseries",
      "title": "Requests by outcome",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 18,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "reqps"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (protocol, outcome) (rate(agentry_gateway_requests_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 8,
      "type": "timeseries",
      "title": "Budget decisions",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 12,
        "y": 18,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "reqps"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (action, zone) (rate(agentry_gateway_budget_decisions_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 9,
      "type": "timeseries",
      "title": "Tokens by model",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 26,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "short"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (model, direction) (rate(agentry_gateway_tokens_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 10,
      "type": "timeseries",
      "title": "Cost by model (USD per hour)",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 12,
        "y": 26,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "currencyUSD"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (model) (increase(agentry_gateway_cost_usd_total[1h]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 11,
      "type": "timeseries",
      "title": "Call duration p50 / p95",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 34,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "histogram_quantile(0.5, sum by (le) (rate(agentry_gateway_call_seconds_bucket[5m])))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "B",
          "expr": "histogram_quantile(0.95, sum by (le) (rate(agentry_gateway_call_seconds_bucket[5m])))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 12,
      "type": "timeseries",
      "title": "Gateway overhead p99",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 12,
        "y": 34,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "histogram_quantile(0.99, sum by (le) (rate(agentry_gateway_overhead_seconds_bucket[5m])))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 13,
      "type": "timeseries",
      "title": "Retries and fallbacks",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 42,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "reqps"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (hop) (rate(agentry_gateway_retries_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "B",
          "expr": "sum by (from_hop, to_hop) (rate(agentry_gateway_fallbacks_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 14,
      "type": "timeseries",
      "title": "Open breakers and calls in flight",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 12,
        "y": 42,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "short"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "max by (hop) (agentry_gateway_breaker_open)",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "B",
          "expr": "sum(agentry_gateway_in_flight)",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 15,
      "type": "row",
      "title": "API",
      "collapsed": false,
      "gridPos": {
        "x": 0,
        "y": 50,
        "w": 24,
        "h": 1
      },
      "panels": []
    },
    {
      "id": 16,
      "type": "timeseries",
      "title": "Requests by status",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 51,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "reqps"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (status) (rate(agentry_api_requests_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 17,
      "type": "timeseries",
      "title": "Latency p95 by route",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 12,
        "y": 51,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "histogram_quantile(0.95, sum by (le, route) (rate(agentry_api_request_seconds_bucket[5m])))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 18,
      "type": "timeseries",
      "title": "Live event streams",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 59,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "short"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum(agentry_api_sse_connections)",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "B",
          "expr": "sum(rate(agentry_api_sse_rejected_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "C",
          "expr": "sum by (outcome) (rate(agentry_api_peer_wakes_total[5m]))",
          "legendFormat": "wake-ups {{ "{{" }}outcome{{ "}}" }}",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 19,
      "type": "timeseries",
      "title": "Chat designer turns",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 12,
        "y": 59,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "reqps"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (outcome) (rate(agentry_api_chat_turns_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 20,
      "type": "timeseries",
      "title": "Answered calls by channel and model",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 67,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "reqps"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (channel, model) (rate(agentry_gateway_upstream_calls_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 21,
      "type": "timeseries",
      "title": "Cluster watch: events and restarts",
      "description": "The API's mirror of Agents and Executions.",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 12,
        "y": 67,
        "w": 12,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "short"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (resource, type) (rate(agentry_api_watch_events_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "B",
          "expr": "sum by (resource) (increase(agentry_api_watch_restarts_total[15m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 22,
      "type": "timeseries",
      "title": "Checkpoint journals",
      "description": "Appends stored or repeated, 409 conflicts (a second pod), refusals by reason, and bytes stored (docs/runs.md).",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 75,
        "w": 24,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "short"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (outcome) (rate(agentry_gateway_checkpoint_appends_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "B",
          "expr": "sum(rate(agentry_gateway_checkpoint_conflicts_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "C",
          "expr": "sum by (reason) (rate(agentry_gateway_checkpoint_refused_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "D",
          "expr": "sum(rate(agentry_gateway_checkpoint_bytes_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "refId": "E",
          "expr": "sum(rate(agentry_gateway_checkpoint_appends_held_total[5m]))",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 23,
      "type": "timeseries",
      "title": "Warm pods ready",
      "description": "Warm pods ready for a claim, by namespace and pool: at 0, runs start as Jobs of their own (docs/runs.md, Warm pool).",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "x": 0,
        "y": 83,
        "w": 24,
        "h": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "short"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom"
        },
        "tooltip": {
          "mode": "multi"
        }
      },
      "targets": [
        {
          "refId": "A",
          "expr": "sum by (namespace, pool) (agentry_pool_ready_pods)",
          "legendFormat": "__auto",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    }
  ],
  "description": "Runs, the LLM gateway and the API, from the metrics each serves (docs/observability.md)."
}
{{- end -}}
