{{/*
Names. Everything the chart creates is prefixed with agentry.fullname so two releases never collide.
*/}}
{{- define "agentry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name, or release-chart when the release name does not already say "agentry". */}}
{{- define "agentry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agentry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "agentry.labels" -}}
helm.sh/chart: {{ include "agentry.chart" . }}
{{ include "agentry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentry
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that never change across upgrades (Deployment selectors are immutable). */}}
{{- define "agentry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per-component names and labels: call with (dict "ctx" $ "component" "operator"). */}}
{{- define "agentry.componentName" -}}
{{- printf "%s-%s" (include "agentry.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentry.componentLabels" -}}
{{ include "agentry.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "agentry.componentSelectorLabels" -}}
{{ include "agentry.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Namespaces. The operator, API and emulator live in the release namespace; Agents, Executions and
their Jobs live in the workload namespace, which Pod Security "restricted" guards.
*/}}
{{- define "agentry.workloadNamespace" -}}
{{- default .Release.Namespace .Values.workloads.namespace }}
{{- end }}

{{/* ServiceAccount names. The tick name is passed to the operator, which puts it on CronJob pods. */}}
{{- define "agentry.operator.serviceAccountName" -}}
{{- default (include "agentry.componentName" (dict "ctx" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- end }}

{{- define "agentry.api.serviceAccountName" -}}
{{- default (include "agentry.componentName" (dict "ctx" . "component" "api")) .Values.api.serviceAccount.name }}
{{- end }}

{{- define "agentry.tick.serviceAccountName" -}}
{{- default (include "agentry.componentName" (dict "ctx" . "component" "tick")) .Values.workloads.tick.serviceAccount.name }}
{{- end }}

{{- define "agentry.workload.serviceAccountName" -}}
{{- default (include "agentry.componentName" (dict "ctx" . "component" "workload")) .Values.workloads.serviceAccount.name }}
{{- end }}

{{/*
ServiceAccount annotations: the given ones plus, with Workload Identity on, the Google service account
the pods act as. Call with (dict "ctx" $ "sa" .Values.x.serviceAccount).
*/}}
{{- define "agentry.serviceAccountAnnotations" -}}
{{- $annotations := deepCopy (default dict .sa.annotations) }}
{{- if and .ctx.Values.workloadIdentity.enabled .sa.gcpServiceAccount }}
{{- $_ := set $annotations "iam.gke.io/gcp-service-account" .sa.gcpServiceAccount }}
{{- end }}
{{- with $annotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* image: repository:tag, the tag defaulting to the chart's appVersion. Call with (dict "ctx" $ "image" .Values.x.image). */}}
{{- define "agentry.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "agentry.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod and container security contexts that Pod Security "restricted" admits. */}}
{{- define "agentry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "agentry.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Scheduling knobs shared by every Deployment: call with the component's values. */}}
{{- define "agentry.scheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Webhook serving: Service DNS name and the Secret holding its certificate. */}}
{{- define "agentry.webhook.serviceName" -}}
{{- include "agentry.componentName" (dict "ctx" . "component" "webhook") }}
{{- end }}

{{- define "agentry.webhook.secretName" -}}
{{- printf "%s-tls" (include "agentry.webhook.serviceName" .) }}
{{- end }}

{{/* Firestore emulator address for in-cluster clients (dev mode). */}}
{{- define "agentry.firestore.emulatorHost" -}}
{{- printf "%s.%s.svc:%d" (include "agentry.componentName" (dict "ctx" . "component" "firestore-emulator")) .Release.Namespace (int .Values.firestore.emulator.port) }}
{{- end }}

{{/*
GOOGLE_CLOUD_PROJECT: the configured project, or a placeholder the emulator accepts. Nothing without
either: the API and the gateway's Firestore ledger then have no database (NOTES.txt warns). With Workload
Identity (GKE, where the project is always known) an empty project is a mistake: refused.
*/}}
{{- define "agentry.gcpProject" -}}
{{- if and .Values.workloadIdentity.enabled (not .Values.gcp.projectId) (not .Values.firestore.emulator.enabled) }}
{{- fail "workloadIdentity.enabled needs gcp.projectId: the Google Cloud project of Firestore (the API's database and the gateway's budget ledger)" }}
{{- end }}
{{- if .Values.gcp.projectId }}
{{- .Values.gcp.projectId }}
{{- else if .Values.firestore.emulator.enabled }}
{{- "agentry-dev" }}
{{- end }}
{{- end }}

{{/* CRD metadata annotations: keep them on uninstall unless told otherwise. */}}
{{- define "agentry.crdAnnotations" -}}
{{- if .Values.crds.keep }}
helm.sh/resource-policy: keep
{{- end }}
{{- end }}

{{/* NetworkPolicy ports stanza for a list of TCP ports; nothing (every port) when empty. */}}
{{- define "agentry.networkPolicy.ports" -}}
{{- if . -}}
ports:
  {{- range . }}
  - protocol: TCP
    port: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
Agent run pods: the pods of Execution Jobs (schedule tick pods carry no execution label). Shared by the
run NetworkPolicy and the gateway's ingress rule; the labels come from agentry_operator.builders.job.
*/}}
{{- define "agentry.runPodSelector" -}}
matchLabels:
  app.kubernetes.io/managed-by: agentry-operator
matchExpressions:
  - key: agentry.dev/execution
    operator: Exists
{{- end }}

{{/* The LLM gateway: names, its in-cluster URL, and the token-key Secret shared with the operator. */}}
{{- define "agentry.gateway.name" -}}
{{- include "agentry.componentName" (dict "ctx" . "component" "gateway") }}
{{- end }}

{{- define "agentry.gateway.serviceAccountName" -}}
{{- default (include "agentry.gateway.name" .) .Values.gateway.serviceAccount.name }}
{{- end }}

{{- define "agentry.gateway.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "agentry.gateway.name" .) .Release.Namespace (int .Values.gateway.port) }}
{{- end }}

{{- define "agentry.tokenKeys.secretName" -}}
{{- default (printf "%s-token-keys" (include "agentry.fullname" .)) .Values.gateway.tokenKeys.existingSecret }}
{{- end }}

{{/* Where the operator and the gateway read the token keys (AGENTRY_TOKEN_KEYS_DIR). */}}
{{- define "agentry.tokenKeys.dir" -}}
/var/run/agentry/token-keys
{{- end }}


{{/*
The API: the in-cluster host name its probes send, and AGENTRY_TRUSTED_HOSTS (JSON list): the Service's
DNS names, the Ingress hosts, the Cloud Scheduler target's host, loopback (kubectl port-forward), and
api.trustedHosts. The API refuses a request whose Host header names anything else.
*/}}
{{- define "agentry.api.serviceHost" -}}
{{- printf "%s.%s.svc" (include "agentry.componentName" (dict "ctx" . "component" "api")) .Release.Namespace }}
{{- end }}

{{- define "agentry.api.trustedHosts" -}}
{{- $service := include "agentry.componentName" (dict "ctx" . "component" "api") }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list $service (printf "%s.%s" $service $ns) (include "agentry.api.serviceHost" .) (printf "%s.%s.svc.cluster.local" $service $ns) "localhost" "127.0.0.1" }}
{{- if .Values.api.ingress.enabled }}
{{- range .Values.api.ingress.hosts }}
{{- with .host }}
{{- $hosts = append $hosts . }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.operator.cloudScheduler }}
{{- if and .location .targetUrl }}
{{- with (urlParse .targetUrl).hostname }}
{{- $hosts = append $hosts . }}
{{- end }}
{{- end }}
{{- end }}
{{- $hosts = concat $hosts .Values.api.trustedHosts }}
{{- $hosts | uniq | toJson }}
{{- end }}

{{/* The agent policy: its ConfigMap, where the API and the operator mount it, and AGENTRY_POLICY_FILE. */}}
{{- define "agentry.policy.configMapName" -}}
{{- include "agentry.componentName" (dict "ctx" . "component" "policy") }}
{{- end }}

{{- define "agentry.policy.file" -}}
/etc/agentry/policy/policy.json
{{- end }}

{{/* One webhook of the operator's ValidatingWebhookConfiguration: (dict "ctx" $ "id" ... "resource" ...
"failurePolicy" ... "caBundle" ... ["ownerLabelOnly" true]). */}}
{{- define "agentry.webhook.entry" -}}
{{- $ := .ctx -}}
- name: {{ .id }}.agentry.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: {{ .failurePolicy }}
  matchPolicy: Equivalent
  timeoutSeconds: {{ $.Values.operator.webhook.timeoutSeconds }}
  rules:
    - apiGroups: [agentry.dev]
      apiVersions: [v1alpha1]
      resources: [{{ .resource }}]
      operations: [CREATE, UPDATE]
      scope: Namespaced
  {{- if .ownerLabelOnly }}
  objectSelector:
    matchExpressions:
      - key: agentry.dev/owner
        operator: Exists
  {{- end }}
  {{- if not $.Values.operator.clusterWide }}
  # Only where this operator serves Agents.
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ include "agentry.workloadNamespace" $ }}
  {{- end }}
  clientConfig:
    service:
      name: {{ include "agentry.webhook.serviceName" $ }}
      namespace: {{ $.Release.Namespace }}
      path: /{{ .id }}
      port: 443
    {{- if .caBundle }}
    caBundle: {{ .caBundle }}
    {{- end }}
{{- end }}
