{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "ssl3d.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name already contains it. */}}
{{- define "ssl3d.fullname" -}}
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

{{- define "ssl3d.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "ssl3d.labels" -}}
helm.sh/chart: {{ include "ssl3d.chart" . }}
{{ include "ssl3d.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ssl3d
{{- end }}

{{/* Labels that select the operator pods (immutable on the Deployment: keep them stable). */}}
{{- define "ssl3d.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ssl3d.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ssl3d.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ssl3d.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest when a digest is set, else repository:tag (default appVersion). */}}
{{- define "ssl3d.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the metrics Service; Prometheus' ServiceMonitor uses it as the `job` label. */}}
{{- define "ssl3d.metricsServiceName" -}}
{{- printf "%s-metrics" (include "ssl3d.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
