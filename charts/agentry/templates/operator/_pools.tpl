{{/*
operator.pools as the operator reads them (AGENTRY_POOLS, agentry_common.pool.PoolProfile): JSON, each
pool's namespaces defaulting to the workload namespace.
*/}}
{{- define "agentry.pools" -}}
{{- $pools := list -}}
{{- range .Values.operator.pools -}}
{{- $pool := deepCopy . -}}
{{- if not $pool.namespaces -}}
{{- $_ := set $pool "namespaces" (list (include "agentry.workloadNamespace" $)) -}}
{{- end -}}
{{- $pools = append $pools $pool -}}
{{- end -}}
{{- toJson $pools -}}
{{- end -}}

{{/* Warm pool pods (the operator's Jobs labelled agentry.dev/pool). */}}
{{- define "agentry.poolPodSelector" -}}
matchLabels:
  app.kubernetes.io/managed-by: agentry-operator
matchExpressions:
  - key: agentry.dev/pool
    operator: Exists
{{- end }}
