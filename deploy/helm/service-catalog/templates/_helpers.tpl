{{/*
The chart's name, possibly overridden.
*/}}
{{- define "service-catalog.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A fully qualified app name, at most 63 characters less the longest suffix the chart appends
("-controller-manager", 19 characters), so every derived name is a valid DNS label.
*/}}
{{- define "service-catalog.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 44 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 44 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 44 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "service-catalog.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. Call with (dict "context" $ "component" "apiserver"); component may
be empty.
*/}}
{{- define "service-catalog.labels" -}}
{{- $ctx := .context -}}
helm.sh/chart: {{ include "service-catalog.chart" $ctx }}
{{ include "service-catalog.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: service-catalog
{{- end }}

{{/*
Selector labels. Call with (dict "context" $ "component" "apiserver").
*/}}
{{- define "service-catalog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "service-catalog.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/*
The API server's Service name; the APIService and the serving certificate refer to it.
*/}}
{{- define "service-catalog.apiserverServiceName" -}}
{{- printf "%s-apiserver" (include "service-catalog.fullname" .) }}
{{- end }}

{{- define "service-catalog.apiserverServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-apiserver" (include "service-catalog.fullname" .)) .Values.serviceAccount.apiserver.name }}
{{- else }}
{{- required "serviceAccount.apiserver.name is required when serviceAccount.create is false" .Values.serviceAccount.apiserver.name }}
{{- end }}
{{- end }}

{{- define "service-catalog.controllerManagerServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controller-manager" (include "service-catalog.fullname" .)) .Values.serviceAccount.controllerManager.name }}
{{- else }}
{{- required "serviceAccount.controllerManager.name is required when serviceAccount.create is false" .Values.serviceAccount.controllerManager.name }}
{{- end }}
{{- end }}

{{/*
The container image.
*/}}
{{- define "service-catalog.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The Secret holding the API server's serving certificate.
*/}}
{{- define "service-catalog.tlsSecretName" -}}
{{- default (printf "%s-apiserver-tls" (include "service-catalog.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/*
The API server's replica count: the value given, else 1 for SQLite and 2 for etcd.
*/}}
{{- define "service-catalog.apiserverReplicas" -}}
{{- if kindIs "invalid" .Values.apiserver.replicas }}
{{- if eq .Values.storage.type "etcd" }}2{{ else }}1{{ end }}
{{- else }}
{{- .Values.apiserver.replicas | int }}
{{- end }}
{{- end }}

{{/*
Checks combinations of values that the schema cannot express; renders nothing.
*/}}
{{- define "service-catalog.validateValues" -}}
{{- $replicas := include "service-catalog.apiserverReplicas" . | int }}
{{- if and (eq .Values.storage.type "sqlite") (gt $replicas 1) }}
{{- fail (printf "storage.type=sqlite supports exactly one API server replica (apiserver.replicas=%d): SQLite is a single file on a ReadWriteOnce volume. Set apiserver.replicas=1, or use storage.type=etcd to run several replicas." $replicas) }}
{{- end }}
{{- if and (eq .Values.storage.type "etcd") (empty .Values.storage.etcd.servers) }}
{{- fail "storage.type=etcd needs storage.etcd.servers: a list of etcd client URLs, e.g. --set 'storage.etcd.servers={https://etcd-0.etcd:2379}'" }}
{{- end }}
{{- if and .Values.tls.existingSecret (not .Values.tls.caBundle) }}
{{- fail (printf "tls.existingSecret=%s needs tls.caBundle: the PEM (or base64 of the PEM) of the CA that signed its certificate, for the APIService's caBundle" .Values.tls.existingSecret) }}
{{- end }}
{{- end }}
