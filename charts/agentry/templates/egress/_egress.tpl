{{/* The egress proxy (squid): its name, in-cluster URL and the address ranges it never connects to. */}}
{{- define "agentry.egress.name" -}}
{{ include "agentry.componentName" (dict "ctx" . "component" "egress") }}
{{- end }}

{{- define "agentry.egress.url" -}}
http://{{ include "agentry.egress.name" . }}.{{ .Release.Namespace }}.svc:{{ .Values.egress.proxy.port }}
{{- end }}
