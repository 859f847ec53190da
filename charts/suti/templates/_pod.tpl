{{/*
The pod template every suti container shares:
(dict "root" $ "component" NAME "svc" VALUES "args" LIST "probes" BOOL "stage" BOOL "restartNever" BOOL)
`stage` marks a queue-consuming service, whose shutdown grace is a configuration key;
`restartNever` a Job's pod.
*/}}
{{- define "suti.podTemplate" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $gpus := include "suti.gpus" (dict "root" $root "svc" $svc) | int -}}
{{- $device := ternary (include "suti.device" $root) "cpu" (gt $gpus 0) -}}
{{- $resources := deepCopy (default (dict) $svc.resources) -}}
{{- range $kind := list "requests" "limits" -}}
{{- if hasKey (get $resources $kind | default (dict)) "nvidia.com/gpu" -}}
{{- fail (printf "%s: set `gpu` rather than resources.%s.nvidia.com/gpu (GPUs are requested only when config.models.device is cuda)" $.component $kind) -}}
{{- end -}}
{{- end -}}
{{- if gt $gpus 0 -}}
{{- $limits := default (dict) $resources.limits -}}
{{- $_ := set $limits "nvidia.com/gpu" $gpus -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end -}}
{{- if kindIs "invalid" $svc.shutdownGraceSeconds -}}
{{- fail (printf "%s: shutdownGraceSeconds is not set" .component) -}}
{{- end -}}
{{- $grace := int $svc.shutdownGraceSeconds -}}
{{- $nodeSelector := deepCopy (default (dict) $svc.nodeSelector) -}}
{{- $tolerations := default (list) $svc.tolerations -}}
{{- if gt $gpus 0 -}}
{{- $nodeSelector = mergeOverwrite (deepCopy (default (dict) $svc.gpuNodeSelector)) $nodeSelector -}}
{{- $tolerations = concat $tolerations (default (list) $svc.gpuTolerations) -}}
{{- end -}}
metadata:
  labels:
    {{- include "suti.selectorLabels" (dict "root" $root "component" .component) | nindent 4 }}
    {{- with (mergeOverwrite (deepCopy (default (dict) $root.Values.podLabels)) (default (dict) $svc.podLabels)) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if not .restartNever }}
    # A configuration change rolls a Deployment's pods (not a Job's: that would train again).
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- end }}
    {{- with (mergeOverwrite (deepCopy (default (dict) $root.Values.podAnnotations)) (default (dict) $svc.podAnnotations)) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- if .restartNever }}
  restartPolicy: Never
  {{- end }}
  serviceAccountName: {{ include "suti.serviceAccountName" $root }}
  automountServiceAccountToken: false
  # The stage's own grace plus a margin: Kubernetes must not kill work the process still finishes.
  terminationGracePeriodSeconds: {{ add $grace (int $svc.terminationMarginSeconds) }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    fsGroup: 10001
    seccompProfile:
      type: RuntimeDefault
  {{- with $nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $svc.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $svc.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "suti.image" (dict "root" $root "svc" $svc) }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args:
        {{- toYaml .args | nindent 8 }}
      env:
        - name: SUTI_CONFIG
          value: /etc/suti/config.yaml
        # Over the image's default: CUDA only in a pod that has a GPU.
        - name: SUTI__MODELS__DEVICE
          value: {{ $device | quote }}
        {{- if .stage }}
        - name: SUTI__STAGES__{{ .component | replace "-" "_" | upper }}__SHUTDOWN_GRACE_SECS
          value: {{ $grace | quote }}
        {{- end }}
        {{- if and (hasKey $svc "prefetch") (not (kindIs "invalid" $svc.prefetch)) }}
        - name: SUTI__STAGES__{{ .component | replace "-" "_" | upper }}__PREFETCH
          value: {{ $svc.prefetch | quote }}
        {{- end }}
        {{- range $key, $value := $svc.env }}
        - name: {{ $key }}
          value: {{ $value | quote }}
        {{- end }}
        {{- with $svc.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      envFrom:
        - secretRef:
            name: {{ $root.Values.secrets.existingSecret }}
      ports:
        - name: admin
          containerPort: 9090
        {{- if eq .component "serving" }}
        - name: http
          containerPort: 8080
        {{- end }}
      {{- if .probes }}
      livenessProbe:
        httpGet:
          path: /health/livez
          port: admin
        periodSeconds: 10
        failureThreshold: 6
      readinessProbe:
        httpGet:
          path: /health/readyz
          port: admin
        periodSeconds: 5
        failureThreshold: 3
      startupProbe:
        httpGet:
          path: /health/livez
          port: admin
        periodSeconds: 5
        failureThreshold: 60
      {{- end }}
      resources:
        {{- toYaml $resources | nindent 8 }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: ["ALL"]
      volumeMounts:
        - name: config
          mountPath: /etc/suti
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- with $svc.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "suti.fullname" $root }}-config
    - name: tmp
      emptyDir: {}
    {{- with $svc.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
