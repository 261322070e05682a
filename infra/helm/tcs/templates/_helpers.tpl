{{/* The chart's object name prefix: the release name, unless it already names the chart. */}}
{{- define "tcs.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries besides its selector labels (tcs.selector). */}}
{{- define "tcs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: tcs
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- end -}}

{{/* Labels of an object that belongs to no one workload. */}}
{{- define "tcs.commonLabels" -}}
{{ include "tcs.labels" . }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one workload: (dict "root" $ "component" "catalog" "region" "us-east-1"). */}}
{{- define "tcs.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .region }}
tcs.dev/region: {{ .region }}
{{- end }}
{{- end -}}

{{- define "tcs.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "tcs.copyImage" -}}
{{- $i := .Values.credentialsCopyImage -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository $i.tag -}}
{{- end -}}
{{- end -}}

{{/* The service account name of a component: (dict "root" $ "component" "catalog"). */}}
{{- define "tcs.serviceAccountName" -}}
{{- $sa := index .root.Values.serviceAccounts .component -}}
{{- if $sa.name -}}
{{- $sa.name -}}
{{- else if $sa.create -}}
{{- printf "%s-%s" (include "tcs.fullname" .root) .component -}}
{{- else -}}
default
{{- end -}}
{{- end -}}

{{/* Checks the values every component needs; fails naming the value. */}}
{{- define "tcs.validate" -}}
{{- if not .Values.aws.homeRegion -}}
{{- fail "aws.homeRegion is required: the AWS region of the catalog table and the change stream, e.g. us-east-1" -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9-]{1,32}$" .Values.aws.prefix) -}}
{{- fail (printf "aws.prefix %q: want 1 to 32 lower-case letters, digits and dashes" .Values.aws.prefix) -}}
{{- end -}}
{{- $seen := dict -}}
{{- range .Values.regions -}}
{{- if not (regexMatch "^[a-z]{2}(-[a-z]+)+-[0-9]+$" (.name | default "")) -}}
{{- fail (printf "regions: name %q is not an AWS region such as us-east-1" (.name | default "")) -}}
{{- end -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "regions: %s is listed twice" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- if and .fallbackRegion (eq .fallbackRegion .name) -}}
{{- fail (printf "regions: %s has itself as fallbackRegion; name another region" .name) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tracing.enabled (not .Values.tracing.endpoint) -}}
{{- fail "tracing.endpoint is required with tracing.enabled: the OTLP collector's base URL, e.g. http://otel-collector.observability.svc:4318" -}}
{{- end -}}
{{- if not .Values.insecureIKnow -}}
{{- range $c := list "catalog" "lookup" -}}
{{- $v := index $.Values $c -}}
{{- if or (not $v.tls.secretName) (not $v.credentials.secretName) -}}
{{- fail (printf "%s.tls.secretName and %s.credentials.secretName are both required on a non-loopback address (or set insecureIKnow: true behind a mesh that authenticates and encrypts)" $c $c) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Environment every container shares: AWS region and GOMEMLIMIT from the memory limit. */}}
{{- define "tcs.env" -}}
- name: AWS_REGION
  value: {{ .Values.aws.homeRegion | quote }}
- name: TCS_LOG_FORMAT
  value: json
- name: TCS_MEMORY_LIMIT_MIB
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
      divisor: 1Mi
# 1000 KiB per MiB of the limit: the Go runtime aims below 97.7% of it.
- name: GOMEMLIMIT
  value: "$(TCS_MEMORY_LIMIT_MIB)000KiB"
{{- with .Values.aws.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Backend flags every binary shares. */}}
{{- define "tcs.backendArgs" -}}
- --backend=aws
- --aws-home-region={{ .Values.aws.homeRegion }}
- --aws-prefix={{ .Values.aws.prefix }}
{{- end -}}

{{/*
The security flags, volumes and mounts of a server (catalog or lookup):
(dict "root" $ "v" .Values.catalog).
*/}}
{{- define "tcs.securityArgs" -}}
{{- if .v.tls.secretName }}
- --tls-cert=/etc/tcs/tls/tls.crt
- --tls-key=/etc/tcs/tls/tls.key
{{- if .v.tls.clientCA }}
- --tls-client-ca=/etc/tcs/tls/ca.crt
{{- end }}
{{- end }}
{{- if .v.credentials.secretName }}
- --tokens-file=/run/tcs/credentials/tokens
{{- end }}
{{- if .root.Values.insecureIKnow }}
- --insecure-i-know
{{- end }}
{{- end -}}

{{- define "tcs.securityMounts" -}}
{{- if .v.tls.secretName }}
- name: tls
  mountPath: /etc/tcs/tls
  readOnly: true
{{- end }}
{{- if .v.credentials.secretName }}
- name: credentials
  mountPath: /run/tcs/credentials
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tcs.securityVolumes" -}}
{{- if .v.tls.secretName }}
- name: tls
  secret:
    secretName: {{ .v.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if .v.credentials.secretName }}
- name: credentials-secret
  secret:
    secretName: {{ .v.credentials.secretName }}
    defaultMode: 0440
    items:
      - key: {{ .v.credentials.key }}
        path: tokens
- name: credentials
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- end -}}

{{/* A lookup node's mounts and volumes: security ones, and the hot-keys directory. */}}
{{- define "tcs.lookupMounts" -}}
{{ include "tcs.securityMounts" . }}
{{- if .v.hotKeys.enabled }}
- name: hot-keys
  mountPath: /var/lib/tcs
{{- end }}
{{- end -}}

{{- define "tcs.lookupVolumes" -}}
{{ include "tcs.securityVolumes" . }}
{{- if .v.hotKeys.enabled }}
- name: hot-keys
  emptyDir:
    sizeLimit: {{ .v.hotKeys.sizeLimit }}
{{- end }}
{{- end -}}

{{/*
The catalog's mounts and volumes: security ones, and the CA that verifies the tcs nodes' certificates
for the propagation status (catalog.nodes.caSecretName, with a scan token and lookup TLS).
*/}}
{{- define "tcs.catalogNodesCA" -}}
{{- $c := .Values.catalog -}}
{{- if and $c.scanToken.secretName .Values.lookup.tls.secretName $c.nodes.caSecretName }}true{{ end -}}
{{- end -}}

{{- define "tcs.catalogMounts" -}}
{{ include "tcs.securityMounts" (dict "root" . "v" .Values.catalog) }}
{{- if include "tcs.catalogNodesCA" . }}
- name: nodes-ca
  mountPath: /etc/tcs/nodes-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tcs.catalogVolumes" -}}
{{ include "tcs.securityVolumes" (dict "root" . "v" .Values.catalog) }}
{{- if include "tcs.catalogNodesCA" . }}
- name: nodes-ca
  secret:
    secretName: {{ .Values.catalog.nodes.caSecretName }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}

{{/*
The catalog's propagation-status flags: how it reaches the tcs nodes, which register their pod IP.
*/}}
{{- define "tcs.catalogNodesArgs" -}}
{{- $c := .Values.catalog -}}
{{- if $c.scanToken.secretName }}
{{- if not .Values.lookup.tls.secretName }}
- --nodes-plaintext
{{- else }}
{{- if $c.nodes.caSecretName }}
- --nodes-ca-file=/etc/tcs/nodes-ca/ca.crt
{{- end }}
{{- with $c.nodes.serverName }}
- --nodes-server-name={{ . }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The init container that copies the credentials file to mode 0600 (see credentialsCopyImage). */}}
{{- define "tcs.credentialsInit" -}}
{{- if .v.credentials.secretName }}
- name: copy-credentials
  image: {{ include "tcs.copyImage" .root }}
  imagePullPolicy: IfNotPresent
  command: ["install", "-m", "0600", "/secret/tokens", "/run/tcs/credentials/tokens"]
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {memory: 16Mi}
  volumeMounts:
    - name: credentials-secret
      mountPath: /secret
      readOnly: true
    - name: credentials
      mountPath: /run/tcs/credentials
{{- end }}
{{- end -}}

{{/* Pod-level settings: (dict "root" $ "v" <component values> "component" "catalog" "sel" <tcs.selector dict>). */}}
{{- define "tcs.podSpec" -}}
serviceAccountName: {{ include "tcs.serviceAccountName" (dict "root" .root "component" .component) }}
# No component calls the Kubernetes API; IRSA and EKS Pod Identity mount their own token.
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
# Spread the pods over zones and nodes where the scheduler can, so that one zone or node lost takes
# few of them.
topologySpreadConstraints:
  {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "tcs.selector" $.sel | nindent 8 }}
  {{- end }}
{{- end -}}

{{/*
Probes of a streamer on its metrics port: (dict "ready" "/readyz"). /healthz fails when work it holds
has made no progress for --live-max-age (10m); /readyz when it holds no work or its last successful
cycle is older than --ready-max-age (30s).
*/}}
{{- define "tcs.streamerProbes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet: {path: {{ .ready }}, port: metrics}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
{{- end -}}

{{/* A headless Service exposing a workload's metrics port to the ServiceMonitor. */}}
{{- define "tcs.metricsService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  labels:
    {{- include "tcs.labels" .root | nindent 4 }}
    {{- include "tcs.selector" .sel | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "tcs.selector" .sel | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .root.Values.metricsPort }}
      targetPort: metrics
      protocol: TCP
{{- end -}}

{{/*
The OpenTelemetry environment of one container (docs/tracing.md), empty unless tracing.enabled:
(dict "root" $ "service" "tcs-catalog" "region" "us-east-1"); region is optional. The service name
tells the components apart in a trace; the pod, namespace and region go into the resource.
*/}}
{{- define "tcs.tracingEnv" -}}
{{- $t := .root.Values.tracing -}}
{{- if $t.enabled -}}
{{- $attrs := list (printf "k8s.namespace.name=%s" .root.Release.Namespace) "k8s.pod.name=$(TCS_POD_NAME)" -}}
{{- with .region }}{{ $attrs = append $attrs (printf "cloud.region=%s" .) }}{{ end -}}
{{- with $t.resourceAttributes }}{{ $attrs = append $attrs . }}{{ end -}}
- name: TCS_POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $t.protocol | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $t.sampler | quote }}
{{- if contains "traceidratio" $t.sampler }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $t.samplerArg | toString | quote }}
{{- end }}
{{- with $t.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- end -}}
