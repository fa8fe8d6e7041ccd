{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "kycgate.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name of every object. */}}
{{- define "kycgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kycgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "kycgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kycgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kycgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Secret the kycgate container reads its variables from. */}}
{{- define "kycgate.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "kycgate.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "kycgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The kycgate container, shared by both modes. */}}
{{- define "kycgate.container" -}}
- name: kycgate
  image: {{ include "kycgate.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve"]
  env:
    - name: KYCGATE_CONFIG
      value: /etc/kycgate/kycgate.toml
    {{- if .Values.redis.url }}
    - name: KYCGATE__STORE__URL
      value: {{ .Values.redis.url | quote }}
    {{- end }}
    {{- if .Values.otlp.endpoint }}
    - name: OTEL_EXPORTER_OTLP_ENDPOINT
      value: {{ .Values.otlp.endpoint | quote }}
    - name: OTEL_EXPORTER_OTLP_PROTOCOL
      value: {{ .Values.otlp.protocol | quote }}
    - name: OTEL_SERVICE_NAME
      value: {{ .Values.otlp.serviceName | quote }}
    {{- end }}
    {{- if .Values.otlp.resourceAttributes }}
    - name: OTEL_RESOURCE_ATTRIBUTES
      value: {{ .Values.otlp.resourceAttributes | quote }}
    {{- end }}
  envFrom:
    - secretRef:
        name: {{ include "kycgate.secretName" . }}
  ports:
    - name: kycgate
      containerPort: 8080
  readinessProbe:
    httpGet:
      path: /readyz
      port: kycgate
    periodSeconds: 5
  livenessProbe:
    httpGet:
      path: /healthz
      port: kycgate
    periodSeconds: 10
    failureThreshold: 6
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - name: config
      mountPath: /etc/kycgate/kycgate.toml
      subPath: kycgate.toml
      readOnly: true
    - name: providers
      mountPath: /etc/kycgate/providers
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* secrets.apiKeys as KYCGATE_API_KEYS: "id1:key1,id2:key2". */}}
{{- define "kycgate.apiKeysEnv" -}}
{{- $pairs := list -}}
{{- range $id, $key := .Values.secrets.apiKeys -}}
{{- $pairs = append $pairs (printf "%s:%s" $id $key) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
