{{/* Names, labels and the per-service values of the suti chart. */}}

{{- define "suti.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "suti.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "serving") */}}
{{- define "suti.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image of one workload: (dict "root" $ "svc" VALUES); the workload's image keys win. */}}
{{- define "suti.image" -}}
{{- $own := default (dict) .svc.image -}}
{{- $repository := default .root.Values.image.repository $own.repository -}}
{{- $tag := default (default .root.Chart.AppVersion .root.Values.image.tag) $own.tag -}}
{{- if and (not $own.tag) (eq .root.Values.image.variant "cuda") -}}{{- $tag = printf "%s-cuda" $tag -}}{{- end -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{/* The configured model device: cpu, cuda or cuda:N. */}}
{{- define "suti.device" -}}
{{- $models := default (dict) .Values.config.models -}}
{{- default "cpu" $models.device -}}
{{- end -}}

{{/* GPUs one workload requests: its `gpu` on a CUDA device, else 0. (dict "root" $ "svc" VALUES) */}}
{{- define "suti.gpus" -}}
{{- if hasPrefix "cuda" (include "suti.device" .root) -}}{{- int (default 0 .svc.gpu) -}}{{- else -}}0{{- end -}}
{{- end -}}

{{/* One workload's values: the defaults overridden by its own entry. (dict "root" $ "override" MAP) */}}
{{- define "suti.workloadValues" -}}
{{- mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy (default (dict) .override)) | toYaml -}}
{{- end -}}

{{- define "suti.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "suti.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The input queue of each queue-consuming service (serving has none). */}}
{{- define "suti.queues" -}}
crawler-clusterer: crawl.requests
expert-finetuner: clusters
generator: experts
clip-filter: candidates
apprentice-trainer: examples
{{- end -}}

{{/* A queue's name with the configuration's namespace prefix: (dict "root" $ "queue" "clusters") */}}
{{- define "suti.queueName" -}}
{{- $namespace := "" -}}
{{- with .root.Values.config.queue -}}{{- $namespace = default "" .namespace -}}{{- end -}}
{{- if $namespace -}}{{- printf "%s.%s" $namespace .queue -}}{{- else -}}{{- .queue -}}{{- end -}}
{{- end -}}
