{{/* Names and labels shared by every template of the BuildIt chart. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "buildit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every resource name: fullnameOverride, else "<release>-<name>" (the release
name alone when it already contains the chart name). Truncated to leave room for suffixes. */}}
{{- define "buildit.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "buildit.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "buildit.labels" -}}
helm.sh/chart: {{ include "buildit.chart" . }}
app.kubernetes.io/name: {{ include "buildit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (pass a dict: ctx, component). */}}
{{- define "buildit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "buildit.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "buildit.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The namespace of stage pods, their Secrets, the agent's Role and the stage ServiceAccount. */}}
{{- define "buildit.stageNamespace" -}}
{{- default .Release.Namespace .Values.agent.stages.namespace -}}
{{- end -}}

{{/* The Secret holding the registration token and the master key. */}}
{{- define "buildit.secretsName" -}}
{{- default (printf "%s-secrets" (include "buildit.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The Secret holding BUILDIT_DATABASE_URL, or "" for SQLite in the data volume. */}}
{{- define "buildit.databaseSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else if .Values.database.url -}}
{{- printf "%s-database" (include "buildit.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "buildit.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecretKey -}}
{{- else -}}
url
{{- end -}}
{{- end -}}

{{- define "buildit.controllerName" -}}
{{- printf "%s-controller" (include "buildit.fullname" .) -}}
{{- end -}}

{{- define "buildit.agentName" -}}
{{- printf "%s-agent" (include "buildit.fullname" .) -}}
{{- end -}}

{{- define "buildit.stageServiceAccountName" -}}
{{- printf "%s-stage" (include "buildit.fullname" .) -}}
{{- end -}}

{{/* What agents pass as --controller: the controller Service's cluster DNS name and gRPC port,
grpcs:// when gRPC TLS is on. */}}
{{- define "buildit.controllerAddress" -}}
{{- $host := printf "%s.%s.svc" (include "buildit.controllerName" .) .Release.Namespace -}}
{{- if .Values.controller.grpcTls.enabled -}}
{{- printf "grpcs://%s:%v" $host .Values.controller.service.grpcPort -}}
{{- else -}}
{{- printf "%s:%v" $host .Values.controller.service.grpcPort -}}
{{- end -}}
{{- end -}}

{{/* BUILDIT_PUBLIC_URL: publicUrl, else the Ingress host, else "" (the controller's default). */}}
{{- define "buildit.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl -}}
{{- else if .Values.controller.ingress.enabled -}}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.controller.ingress.tlsSecretName))) .Values.controller.ingress.host -}}
{{- end -}}
{{- end -}}

{{/* BUILDIT_AGENT_LABELS from the agent.labels map, "k=v,k2=v2" sorted by key. */}}
{{- define "buildit.agentLabels" -}}
{{- $pairs := list -}}
{{- range $key, $value := .Values.agent.labels -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
