{{/*
OTEL_* environment of a component when tracing.otlpEndpoint is set (docs/observability.md); nothing
when it is empty, so an untraced installation renders exactly as before.
Usage: {{ include "agentry.tracing.env" (dict "ctx" $ "service" "agentry-api") | nindent 12 }}
*/}}
{{- define "agentry.tracing.env" -}}
{{- $t := .ctx.Values.tracing -}}
{{- if $t.otlpEndpoint }}
# Tracing (agentry_common.tracing): the standard OpenTelemetry variables.
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $t.samplerRatio | toString | quote }}
{{- with $t.resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "agentry.tracing.attributes" . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* key=value pairs of a map, comma-separated and sorted (OTEL_RESOURCE_ATTRIBUTES). */}}
{{- define "agentry.tracing.attributes" -}}
{{- $pairs := list -}}
{{- range $k, $v := . }}{{ $pairs = append $pairs (printf "%s=%s" $k $v) }}{{ end -}}
{{- join "," $pairs -}}
{{- end -}}
