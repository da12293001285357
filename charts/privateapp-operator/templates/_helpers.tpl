{{- define "privateapp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "privateapp-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else if contains (include "privateapp-operator.name" .) .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "privateapp-operator.name" .) | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "privateapp-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "privateapp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "privateapp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "privateapp-operator.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "privateapp-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "privateapp-operator.tokenServiceHost" -}}
{{ include "privateapp-operator.fullname" . }}-token-service.{{ .Release.Namespace }}.svc
{{- end }}

{{- define "privateapp-operator.webhookHost" -}}
{{ include "privateapp-operator.fullname" . }}-webhook.{{ .Release.Namespace }}.svc
{{- end }}

{{- define "privateapp-operator.insightsHost" -}}
{{ include "privateapp-operator.fullname" . }}-insights.{{ .Release.Namespace }}.svc
{{- end }}

{{- define "privateapp-operator.ingestTokenSecret" -}}
{{ .Values.insights.ingest.tokenSecret | default (printf "%s-insights-ingest" (include "privateapp-operator.fullname" .)) }}
{{- end }}

{{- /*
insightsCerts makes (once per render) the self-signed CA and serving
certificate of the insights component: a CA of its own, so that an install
from before the call log (whose CA key the chart never kept) gets one on
upgrade. An install that has them keeps them.
*/ -}}
{{- define "privateapp-operator.insightsCerts" -}}
{{- if not (hasKey $ "privateappInsightsCerts") }}
{{- $name := include "privateapp-operator.fullname" . }}
{{- $live := lookup "v1" "Secret" .Release.Namespace (printf "%s-insights-tls" $name) }}
{{- $certs := dict }}
{{- if and $live (index $live.data "ca.crt") }}
{{- $certs = dict "ca" (index $live.data "ca.crt" | b64dec) "cert" (index $live.data "tls.crt" | b64dec) "key" (index $live.data "tls.key" | b64dec) }}
{{- else }}
{{- $days := int .Values.certificates.validityDays }}
{{- $ca := genCA (printf "%s-insights-ca" $name) $days }}
{{- $c := genSignedCert (include "privateapp-operator.insightsHost" .) nil (list (include "privateapp-operator.insightsHost" .) (printf "%s-insights.%s.svc.cluster.local" $name .Release.Namespace)) $days $ca }}
{{- $certs = dict "ca" $ca.Cert "cert" $c.Cert "key" $c.Key }}
{{- end }}
{{- $_ := set $ "privateappInsightsCerts" $certs }}
{{- end }}
{{- end }}

{{- /* The insights APIService's caBundle: the chart's insights CA in
self-signed mode; in operator mode whatever the operator injected (carried
over an upgrade); cert-manager injects its own. */ -}}
{{- define "privateapp-operator.insightsCABundle" -}}
{{- if eq .Values.certificates.mode "self-signed" }}
{{- include "privateapp-operator.insightsCerts" . }}
caBundle: {{ $.privateappInsightsCerts.ca | b64enc }}
{{- else if eq .Values.certificates.mode "operator" }}
{{- $live := lookup "apiregistration.k8s.io/v1" "APIService" "" "v1alpha1.insights.privateapps.dev" }}
{{- if and $live $live.spec.caBundle }}
caBundle: {{ $live.spec.caBundle }}
{{- end }}
{{- end }}
{{- end }}

{{- define "privateapp-operator.tokenServiceTLSSecret" -}}
{{ .Values.tokenService.tls.secretName | default (printf "%s-token-service-tls" (include "privateapp-operator.fullname" .)) }}
{{- end }}

{{- /*
certs makes (once per render) the self-signed CA and the serving
certificates of the webhooks and the token service. An install that already
has them keeps them, so an upgrade does not change the CA bundle.
*/ -}}
{{- define "privateapp-operator.certs" -}}
{{- if not (hasKey $ "privateappCerts") }}
{{- $name := include "privateapp-operator.fullname" . }}
{{- $days := int .Values.certificates.validityDays }}
{{- $webhook := lookup "v1" "Secret" .Release.Namespace (printf "%s-webhook-tls" $name) }}
{{- $ts := lookup "v1" "Secret" .Release.Namespace (printf "%s-token-service-tls" $name) }}
{{- $certs := dict }}
{{- if and $webhook $ts (index $webhook.data "ca.crt") }}
{{- $certs = dict "ca" (index $webhook.data "ca.crt" | b64dec) "webhookCert" (index $webhook.data "tls.crt" | b64dec) "webhookKey" (index $webhook.data "tls.key" | b64dec) "tsCert" (index $ts.data "tls.crt" | b64dec) "tsKey" (index $ts.data "tls.key" | b64dec) }}
{{- else }}
{{- $ca := genCA (printf "%s-ca" $name) $days }}
{{- $wh := genSignedCert (include "privateapp-operator.webhookHost" .) nil (list (include "privateapp-operator.webhookHost" .) (printf "%s-webhook.%s.svc.cluster.local" $name .Release.Namespace)) $days $ca }}
{{- $tsc := genSignedCert (include "privateapp-operator.tokenServiceHost" .) nil (list (include "privateapp-operator.tokenServiceHost" .) (printf "%s-token-service.%s.svc.cluster.local" $name .Release.Namespace) (printf "%s-token-service" $name)) $days $ca }}
{{- $certs = dict "ca" $ca.Cert "webhookCert" $wh.Cert "webhookKey" $wh.Key "tsCert" $tsc.Cert "tsKey" $tsc.Key }}
{{- end }}
{{- $_ := set $ "privateappCerts" $certs }}
{{- end }}
{{- end }}

{{- define "privateapp-operator.webhookCABundle" -}}
{{- if eq .Values.certificates.mode "self-signed" }}
{{- include "privateapp-operator.certs" . }}
caBundle: {{ $.privateappCerts.ca | b64enc }}
{{- else if eq .Values.certificates.mode "operator" }}
{{- /* The operator injects its CA; an upgrade carries the injected bundle
over instead of blanking it until the operator injects it again. */}}
{{- $live := lookup "admissionregistration.k8s.io/v1" "ValidatingWebhookConfiguration" "" (include "privateapp-operator.fullname" .) }}
{{- if and $live $live.webhooks }}
{{- with (index $live.webhooks 0).clientConfig.caBundle }}
caBundle: {{ . }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "privateapp-operator.webhookAnnotations" -}}
{{- if eq .Values.certificates.mode "cert-manager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "privateapp-operator.fullname" . }}-webhook
{{- end }}
{{- end }}

{{- define "privateapp-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
# Volumes (the insights component's PersistentVolumeClaim) are made
# writable for the group 65532; OnRootMismatch skips the walk once done.
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "privateapp-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* topologySpread is the spread of a component's replicas over nodes
(dict "root" . "component" "<name>"). */}}
{{- define "privateapp-operator.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: {{ .root.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "privateapp-operator.selectorLabels" (dict "root" .root "component" .component) | nindent 8 }}
{{- end }}
{{- end }}

{{/*
The peers that may call the token service by default: pods of the
release's namespace, and of each namespace in networkPolicy.gatewayNamespaces.
*/}}
{{- define "privateapp-operator.gatewayPeers" -}}
- podSelector: {}
{{- range .Values.networkPolicy.gatewayNamespaces }}
- namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: {{ . | quote }}}
{{- end }}
{{- end }}

{{/*
GOMEMLIMIT set to the container's memory limit: the Go runtime collects
garbage harder as the heap nears it, instead of growing past the limit and
being killed (the token service with its connection bound full of stalled
requests peaks 20 MiB lower with it, docs/benchmarks.md).
*/}}
{{- define "privateapp-operator.goMemLimit" -}}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef: {resource: limits.memory}
{{- end }}
