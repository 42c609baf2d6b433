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
{{/* A model group's names and labels: called with a model context (`padellm-ner.modelContexts`: the root's
fields and .Model, an entry of .Values.models). */}}
{{- define "padellm-ner.worker.fullname" -}}{{ include "padellm-ner.fullname" . }}-worker-{{ .Model.name }}{{- end -}}
{{- define "padellm-ner.worker.headless" -}}{{ include "padellm-ner.worker.fullname" . }}-headless{{- end -}}
{{- define "padellm-ner.worker.selectorLabels" -}}
{{ include "padellm-ner.selectorLabels" . }}
app.kubernetes.io/component: worker
padellm-ner.dev/model: {{ .Model.name }}
{{- end -}}

{{- define "padellm-ner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "padellm-ner.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference: registry/repository@digest where a digest is given (immutable), else :tag. */}}
{{- define "padellm-ner.image" -}}
{{- if .digest -}}
{{ printf "%s/%s@%s" .registry .repository .digest }}
{{- else -}}
{{ printf "%s/%s:%s" .registry .repository .tag }}
{{- end -}}
{{- end -}}

{{- define "padellm-ner.serviceImage" -}}
{{ include "padellm-ner.image" (dict "registry" .Values.image.registry "repository" .Values.image.serviceRepository "digest" .Values.image.serviceDigest "tag" (default .Chart.AppVersion .Values.image.tag)) }}
{{- end -}}

{{- define "padellm-ner.workerImage" -}}
{{ include "padellm-ner.image" (dict "registry" .Values.image.registry "repository" .Values.image.workerRepository "digest" .Values.image.workerDigest "tag" (default .Chart.AppVersion .Values.image.tag)) }}
{{- end -}}

{{- define "padellm-ner.tgiImage" -}}
{{ include "padellm-ner.image" (dict "registry" .Values.tgi.image.registry "repository" .Values.tgi.image.repository "digest" .Values.tgi.image.digest "tag" .Values.tgi.image.tag) }}
{{- end -}}

{{- define "padellm-ner.vllmImage" -}}
{{ include "padellm-ner.image" (dict "registry" .Values.vllm.image.registry "repository" .Values.vllm.image.repository "digest" .Values.vllm.image.digest "tag" .Values.vllm.image.tag) }}
{{- end -}}

{{/* The model server beside each worker: "vllm", "tgi", or "" (the embedded engine); one at most. */}}
{{- define "padellm-ner.modelServer" -}}
{{- if and .Values.vllm.enabled .Values.tgi.enabled -}}
{{- fail "vllm.enabled and tgi.enabled: a worker pod runs one model server" -}}
{{- else if .Values.vllm.enabled -}}vllm
{{- else if .Values.tgi.enabled -}}tgi
{{- end -}}
{{- end -}}

{{/* The model server's HTTP port (its API and its /metrics), where one runs. */}}
{{- define "padellm-ner.modelServerPort" -}}
{{- if .Values.vllm.enabled -}}{{ .Values.vllm.port }}{{- else if .Values.tgi.enabled -}}{{ .Values.tgi.port }}{{- end -}}
{{- end -}}

{{- define "padellm-ner.tgiModelCacheClaim" -}}
{{- default (printf "%s-model-cache" (include "padellm-ner.fullname" .)) .Values.tgi.modelCache.existingClaim -}}
{{- end -}}

{{/* The ports of kafka.bootstrapServers, each once: where the service's egress may go. */}}
{{- define "padellm-ner.kafkaPorts" -}}
{{- $ports := list -}}
{{- range splitList "," .Values.kafka.bootstrapServers -}}
{{- $port := regexFind "[0-9]+$" (trim .) | default "9092" -}}
{{- $ports = append $ports $port -}}
{{- end -}}
{{- join "," (uniq $ports) -}}
{{- end -}}

{{/* The workers, one gRPC target per model group: the group's headless Service's DNS name resolves to every
ready worker pod of it, and the service's channel balances over them round-robin (re-resolving as pods come and
go), so scaling a worker StatefulSet changes capacity without re-rendering the service. The service asks each
target which schema it serves and sends documents to their schema's group. */}}
{{- define "padellm-ner.workerEndpoints" -}}
{{- $targets := list -}}
{{- range $model := .Values.models -}}
{{- $ctx := dict "Values" $.Values "Release" $.Release "Chart" $.Chart "Model" $model -}}
{{- $targets = append $targets (printf "dns:///%s.%s.svc.%s:%d" (include "padellm-ner.worker.headless" $ctx) $.Release.Namespace $.Values.clusterDomain (int $.Values.worker.grpcPort)) -}}
{{- end -}}
{{- join "," $targets -}}
{{- end -}}

{{/* Kafka's bootstrap servers as KEDA's operator (in its own namespace) must see them: a host without a dot is
a Service of the release's namespace and gets its full name. */}}
{{- define "padellm-ner.kafkaBootstrapQualified" -}}
{{- $servers := list -}}
{{- range splitList "," .Values.kafka.bootstrapServers -}}
{{- $server := trim . -}}
{{- $host := regexReplaceAll ":[0-9]+$" $server "" -}}
{{- if contains "." $host -}}
{{- $servers = append $servers $server -}}
{{- else -}}
{{- $servers = append $servers (printf "%s.%s.svc.%s%s" $host $.Release.Namespace $.Values.clusterDomain (trimPrefix $host $server)) -}}
{{- end -}}
{{- end -}}
{{- join "," $servers -}}
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
fsGroupChangePolicy: OnRootMismatch
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
{{- if and .Values.vllm.enabled (lt (int .Values.vllm.maxModelLen) (add (mul 2 $worker) 128)) -}}
{{- fail (printf "vllm.maxModelLen (%d) must be at least 2 x worker.maxWindowTokens + 128 (%d)" (int .Values.vllm.maxModelLen) (add (mul 2 $worker) 128)) -}}
{{- end -}}
{{- end -}}

{{/* The label the ServiceMonitor selects: the Services that carry metrics ports. */}}
{{- define "padellm-ner.metricsLabel" -}}
padellm-ner.io/metrics: "true"
{{- end -}}


{{/* Egress to the cluster's DNS: names are resolved (the workers' headless Service, Kafka's brokers). */}}
{{- define "padellm-ner.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}
