{{/* Names, labels and shared snippets (Bitnami-style helpers). */}}

{{- define "padellm-ner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "padellm-ner.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "padellm-ner.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "padellm-ner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "padellm-ner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "padellm-ner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "padellm-ner.service.fullname" -}}{{ include "padellm-ner.fullname" . }}-service{{- end -}}
{{/* The service's workload kind: a StatefulSet with exactly-once delivery, so each pod keeps its name and with
it its Kafka transactional id across restarts (a restarted pod fences its predecessor's open transaction);
a Deployment otherwise. */}}
{{- define "padellm-ner.service.kind" -}}{{ if .Values.service.stream.exactlyOnce }}StatefulSet{{ else }}Deployment{{ end }}{{- end -}}
{{- define "padellm-ner.worker.fullname" -}}{{ include "padellm-ner.fullname" . }}-worker{{- end -}}
{{- define "padellm-ner.worker.headless" -}}{{ include "padellm-ner.fullname" . }}-worker-headless{{- end -}}

{{- define "padellm-ner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "padellm-ner.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "padellm-ner.serviceImage" -}}
{{ printf "%s/%s:%s" .Values.image.registry .Values.image.serviceRepository (default .Chart.AppVersion .Values.image.tag) }}
{{- end -}}

{{- define "padellm-ner.workerImage" -}}
{{ printf "%s/%s:%s" .Values.image.registry .Values.image.workerRepository (default .Chart.AppVersion .Values.image.tag) }}
{{- end -}}

{{/* Every worker pod by its stable StatefulSet DNS name: the orchestrator balances and retries across them. */}}
{{- define "padellm-ner.workerEndpoints" -}}
{{- $names := list -}}
{{- $headless := include "padellm-ner.worker.headless" . -}}
{{- $worker := include "padellm-ner.worker.fullname" . -}}
{{- range $i := until (int .Values.worker.replicaCount) -}}
{{- $names = append $names (printf "%s-%d.%s.%s.svc.%s:%d" $worker $i $headless $.Release.Namespace $.Values.clusterDomain (int $.Values.worker.grpcPort)) -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{- define "padellm-ner.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "padellm-ner.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Client TLS flags of the orchestrator towards TLS-enabled workers. */}}
{{- define "padellm-ner.workerTlsArgs" -}}
{{- if .Values.grpcTls.enabled }}
- --worker-tls-ca=/etc/padellm/grpc-tls/ca.crt
{{- if .Values.grpcTls.mutual }}
- --worker-tls-cert=/etc/padellm/grpc-tls/tls.crt
- --worker-tls-key=/etc/padellm/grpc-tls/tls.key
{{- end }}
{{- end }}
{{- end -}}

{{- define "padellm-ner.serverTlsArgs" -}}
{{- if .Values.grpcTls.enabled }}
- --tls-cert=/etc/padellm/grpc-tls/tls.crt
- --tls-key=/etc/padellm/grpc-tls/tls.key
{{- if .Values.grpcTls.mutual }}
- --tls-client-ca=/etc/padellm/grpc-tls/ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{/*
Window sizes must agree: the service's windows fit what a worker call may carry, and TGI's --max-input-tokens
holds a window's prompt (estimated tokens may undercount a tokenizer's by up to 2x; 128 for the template and the
mention suffix).
*/}}
{{- define "padellm-ner.checkWindows" -}}
{{- $window := int .Values.service.windowTokens -}}
{{- $worker := int .Values.worker.maxWindowTokens -}}
{{- if gt $window $worker -}}
{{- fail (printf "service.windowTokens (%d) is larger than worker.maxWindowTokens (%d): workers would refuse the windows" $window $worker) -}}
{{- end -}}
{{- if and .Values.tgi.enabled (lt (int .Values.tgi.maxInputTokens) (add (mul 2 $worker) 128)) -}}
{{- fail (printf "tgi.maxInputTokens (%d) must be at least 2 x worker.maxWindowTokens + 128 (%d)" (int .Values.tgi.maxInputTokens) (add (mul 2 $worker) 128)) -}}
{{- end -}}
{{- end -}}
