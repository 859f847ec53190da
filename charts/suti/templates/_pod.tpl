{{/*
The pod spec every suti container shares: (dict "root" $ "component" NAME "svc" VALUES "args" LIST)
*/}}
{{- define "suti.podSpec" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
serviceAccountName: {{ include "suti.serviceAccountName" $root }}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- with $svc.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .component }}
    image: {{ include "suti.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    env:
      - name: SUTI_CONFIG
        value: /etc/suti/config.yaml
      {{- if and (hasKey $svc "prefetch") (not (kindIs "invalid" $svc.prefetch)) }}
      - name: SUTI__STAGES__{{ .component | replace "-" "_" | upper }}__PREFETCH
        value: {{ $svc.prefetch | quote }}
      {{- end }}
      {{- range $key, $value := $svc.env }}
      - name: {{ $key }}
        value: {{ $value | quote }}
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
      {{- toYaml $svc.resources | nindent 6 }}
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
volumes:
  - name: config
    configMap:
      name: {{ include "suti.fullname" $root }}-config
  - name: tmp
    emptyDir: {}
{{- end -}}
