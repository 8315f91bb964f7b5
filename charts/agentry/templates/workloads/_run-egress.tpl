{{/*
The egress of agent runs (workloads/networkpolicy.yaml), also given to warm pool pods before their claim
(workloads/pool-networkpolicy.yaml), so that a claimed pod's first call never waits for a policy change.
The caller puts it right under its `egress:` key.
*/}}
{{- define "agentry.runEgress" }}
{{- with .Values.workloads.networkPolicy }}
    - to:
        {{- toYaml .dns | nindent 8 }}
      ports:
        - protocol: UDP
          port: 53
        - protocol: TCP
          port: 53
    {{- if eq .egress "internet" }}
    - to:
        - ipBlock:
            cidr: 0.0.0.0/0
            {{- with .privateCidrs }}
            except:
              {{- toYaml . | nindent 14 }}
            {{- end }}
      {{- with (include "agentry.networkPolicy.ports" .ports) }}{{ . | trim | nindent 6 }}{{- end }}
    {{- else if eq .egress "proxy" }}
    # The egress proxy only: it opens each run's own spec.http.allowedHosts (docs/security.md, "Egress").
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $.Release.Namespace }}
          podSelector:
            matchLabels:
              {{- include "agentry.componentSelectorLabels" (dict "ctx" $ "component" "egress") | nindent 14 }}
      ports:
        - protocol: TCP
          port: {{ $.Values.egress.proxy.port }}
    {{- else if .cidrs }}
    - to:
        {{- range .cidrs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      {{- with (include "agentry.networkPolicy.ports" .ports) }}{{ . | trim | nindent 6 }}{{- end }}
    {{- end }}
    {{- if $.Values.gateway.enabled }}
    # The LLM gateway, which holds the provider keys (runs only carry a per-Execution token).
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $.Release.Namespace }}
          podSelector:
            matchLabels:
              {{- include "agentry.componentSelectorLabels" (dict "ctx" $ "component" "gateway") | nindent 14 }}
      ports:
        - protocol: TCP
          port: {{ $.Values.gateway.port }}
    {{- end }}
    {{- if $.Values.workloadIdentity.enabled }}
    # The GKE metadata server, where Workload Identity tokens come from: GKE's documentation asks
    # for 169.254.169.254:80 with Dataplane V2 and 169.254.169.252:988 otherwise.
    - to:
        - ipBlock:
            cidr: 169.254.169.254/32
      ports:
        - protocol: TCP
          port: 80
    - to:
        - ipBlock:
            cidr: 169.254.169.252/32
      ports:
        - protocol: TCP
          port: 988
    {{- end }}
    {{- with .extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end }}
