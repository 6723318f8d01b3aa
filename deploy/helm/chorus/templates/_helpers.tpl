{{/*
Names, labels and the per-service settings shared by every template.
*/}}

{{- define "chorus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chorus.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The four services: values key → object name, Python module, whether it uses Postgres,
whether it publishes events (and so reads the history settings). The route table names
services by object name.
*/}}
{{- define "chorus.services" -}}
api:
  name: api
  module: chorus_api
  database: true
  events: true
realtime:
  name: realtime
  module: chorus_realtime
  database: false
  events: true
llmGateway:
  name: llm-gateway
  module: chorus_gateway
  database: false
  events: false
worker:
  name: worker
  module: chorus_worker
  database: true
  events: true
{{- end }}

{{- define "chorus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "chorus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chorus
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "chorus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chorus.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of a component: {root, component}. */}}
{{- define "chorus.componentLabels" -}}
{{ include "chorus.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Image reference of a service: {root, key}. Digest wins over tag. */}}
{{- define "chorus.image" -}}
{{- $svc := get (include "chorus.services" .root | fromYaml) .key }}
{{- $own := (get .root.Values .key).image }}
{{- $repository := default (printf "%s/chorus-%s" .root.Values.image.registry $svc.name) $own.repository }}
{{- if $own.digest }}
{{- printf "%s@%s" $repository $own.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default (default .root.Chart.AppVersion .root.Values.image.tag) $own.tag) }}
{{- end }}
{{- end }}

{{/* Image of a bundled dependency: {repository, tag, digest}. */}}
{{- define "chorus.dependencyImage" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{- define "chorus.secretName" -}}
{{- default (printf "%s-secrets" (include "chorus.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/*
A generated secret value that survives upgrades: the value already in the cluster (lookup),
else the one given, else a random one. Args: {root, secret, key, given, length}.
*/}}
{{- define "chorus.persistentSecret" -}}
{{- if .given }}
{{- .given }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if and $existing (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "chorus.postgresPassword" -}}
{{- include "chorus.persistentSecret" (dict "root" . "secret" (printf "%s-postgres" (include "chorus.fullname" .)) "key" "POSTGRES_PASSWORD" "given" .Values.postgres.password "length" 32) }}
{{- end }}

{{- define "chorus.redisPassword" -}}
{{- include "chorus.persistentSecret" (dict "root" . "secret" (printf "%s-redis" (include "chorus.fullname" .)) "key" "REDIS_PASSWORD" "given" .Values.redis.password "length" 32) }}
{{- end }}

{{/* REDIS_SENTINELS: the bundled group's Service, or redis.external.sentinels ("" for
one Redis at REDIS_URL). */}}
{{- define "chorus.redisSentinels" -}}
{{- if and .Values.redis.enabled (eq .Values.redis.mode "sentinel") -}}
{{- printf "%s-redis-sentinel:26379" (include "chorus.fullname" .) -}}
{{- else if not .Values.redis.enabled -}}
{{- .Values.redis.external.sentinels -}}
{{- end -}}
{{- end }}

{{/* REDIS_SENTINEL_MASTER that goes with chorus.redisSentinels. */}}
{{- define "chorus.redisSentinelMaster" -}}
{{- if .Values.redis.enabled -}}
{{- .Values.redis.sentinel.masterName -}}
{{- else -}}
{{- .Values.redis.external.sentinelMaster -}}
{{- end -}}
{{- end }}

{{/* The environment of the bundled Sentinel group's containers. */}}
{{- define "chorus.redisPodEnv" -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "chorus.fullname" . }}-redis
      key: REDIS_PASSWORD
# redis-cli (probes, discovery) reads the password from here.
- name: REDISCLI_AUTH
  valueFrom:
    secretKeyRef:
      name: {{ include "chorus.fullname" . }}-redis
      key: REDIS_PASSWORD
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: MASTER
  value: {{ .Values.redis.sentinel.masterName | quote }}
{{- end }}

{{/*
The environment variables of a service that are not secret, as a YAML map (its ConfigMap).
Args: {root, key}.
*/}}
{{- define "chorus.config" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $svc := get (include "chorus.services" $root | fromYaml) .key }}
{{- $own := get $v .key -}}
ENV: {{ $v.config.env | quote }}
LOG_LEVEL: {{ $v.config.logLevel | quote }}
LOG_FORMAT: {{ $v.config.logFormat | quote }}
ACCESS_LOG: {{ $v.config.accessLog | quote }}
HOST: "0.0.0.0"
PORT: "8000"
FORWARDED_ALLOW_IPS: {{ $v.config.forwardedAllowIps | quote }}
JWT_ISSUER: {{ $v.config.jwtIssuer | quote }}
TOKEN_VERSION_CACHE_SECONDS: {{ $v.config.tokenVersionCacheSeconds | quote }}
REDIS_MAX_CONNECTIONS: {{ $v.config.redisMaxConnections | quote }}
{{- with include "chorus.redisSentinels" $root }}
REDIS_SENTINELS: {{ . | quote }}
REDIS_SENTINEL_MASTER: {{ include "chorus.redisSentinelMaster" $root | quote }}
{{- end }}
READY_CHECK_TIMEOUT: {{ $v.config.readyCheckTimeout | quote }}
ARQ_QUEUE_NAME: {{ $v.config.queueName | quote }}
{{- with $v.tracing }}
{{- if .endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .endpoint | quote }}
OTEL_SERVICE_NAME: {{ printf "chorus-%s" $svc.name | quote }}
OTEL_TRACES_SAMPLER: {{ .sampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ .samplerRatio | quote }}
OTEL_RESOURCE_ATTRIBUTES: {{ printf "k8s.namespace.name=%s,%s" $root.Release.Namespace .resourceAttributes | trimSuffix "," | quote }}
{{- end }}
{{- end }}
{{- if $svc.events }}
HISTORY_SIZE: {{ $v.events.historySize | quote }}
HISTORY_TTL: {{ $v.events.historyTtl | quote }}
{{- end }}
{{- if eq .key "worker" }}
DRAIN_SECONDS: "0"
{{- else }}
DRAIN_SECONDS: {{ $own.shutdown.drainSeconds | quote }}
{{- end }}
GRACEFUL_TIMEOUT: {{ $own.shutdown.gracefulTimeoutSeconds | quote }}
{{- if $svc.database }}
DB_POOL_SIZE: {{ $v.database.poolSize | quote }}
DB_MAX_OVERFLOW: {{ $v.database.maxOverflow | quote }}
DB_POOL_TIMEOUT: {{ $v.database.poolTimeout | quote }}
DB_POOL_RECYCLE: {{ $v.database.poolRecycle | quote }}
DB_POOL_PRE_PING: {{ $v.database.poolPrePing | quote }}
DB_CONNECT_TIMEOUT: {{ $v.database.connectTimeout | quote }}
DB_STATEMENT_TIMEOUT_MS: {{ $v.database.statementTimeoutMs | quote }}
{{- end }}
{{- if eq .key "api" }}
DB_READ_POOL_SIZE: {{ $v.database.readPoolSize | quote }}
ACCESS_TOKEN_TTL_SECONDS: {{ $own.auth.accessTokenTtlSeconds | quote }}
TOKEN_RESYNC_SECONDS: {{ $own.auth.tokenResyncSeconds | quote }}
ADMIN_EMAILS: {{ $own.auth.adminEmails | quote }}
KEY_RESYNC_SECONDS: {{ $own.auth.keyResyncSeconds | quote }}
KEYS_MAX_PER_OWNER: {{ $own.auth.keysMaxPerOwner | quote }}
TEAMS_MAX_PER_USER: {{ $own.auth.teamsMaxPerUser | quote }}
LOGIN_WINDOW_SECONDS: {{ $own.auth.loginWindowSeconds | quote }}
LOGIN_FREE_FAILURES: {{ $own.auth.loginFreeFailures | quote }}
LOGIN_MAX_FAILURES_PER_ACCOUNT: {{ $own.auth.loginMaxFailuresPerAccount | quote }}
LOGIN_MAX_FAILURES_PER_ADDRESS: {{ $own.auth.loginMaxFailuresPerAddress | quote }}
LOGIN_MAX_FAILURES_PER_DEVICE: {{ $own.auth.loginMaxFailuresPerDevice | quote }}
LOGIN_DEVICE_COOKIE_DAYS: {{ $own.auth.loginDeviceCookieDays | quote }}
SIGNUP_WINDOW_SECONDS: {{ $own.auth.signupWindowSeconds | quote }}
SIGNUP_MAX_PER_ADDRESS: {{ $own.auth.signupMaxPerAddress | quote }}
SIGNUP_MAX_PER_MINUTE: {{ $own.auth.signupMaxPerMinute | quote }}
{{- end }}
{{- if eq .key "llmGateway" }}
LLM_PROVIDERS: "/etc/chorus/llm-providers/llm-providers.yaml"
GATEWAY_USER_MODELS: {{ $own.userModels | quote }}
GATEWAY_KEY_CACHE_SECONDS: {{ $own.keyCacheSeconds | quote }}
{{- end }}
{{- if eq .key "realtime" }}
USER_BYTES_PER_SECOND: {{ $own.userQuotas.bytesPerSecond | quote }}
USER_BYTES_BURST: {{ $own.userQuotas.bytesBurst | quote }}
USER_NEW_ROOMS_PER_MINUTE: {{ $own.userQuotas.newRoomsPerMinute | quote }}
ASSISTANT_MAX_PENDING_PER_USER: {{ $own.userQuotas.assistantMaxPending | quote }}
{{- end }}
{{- if eq .key "worker" }}
SMTP_HOST: {{ $own.smtp.host | quote }}
SMTP_PORT: {{ $own.smtp.port | quote }}
SMTP_FROM: {{ $own.smtp.from | quote }}
SMTP_STARTTLS: {{ $own.smtp.starttls | quote }}
LLM_GATEWAY_URL: {{ default (printf "http://%s-llm-gateway:8000" (include "chorus.fullname" $root)) $own.llmGatewayUrl | quote }}
{{- with (default (include "chorus.publicUrl" $root) $own.appUrl) }}
APP_URL: {{ . | quote }}
{{- end }}
ASSISTANT_MODEL: {{ $own.assistantModel | quote }}
MAX_JOBS: {{ $own.maxJobs | quote }}
ASSISTANT_MAX_JOBS: {{ $own.assistantMaxJobs | quote }}
ROOM_MESSAGES_RETENTION_DAYS: {{ $own.roomMessagesRetentionDays | quote }}
JOB_COMPLETION_WAIT: {{ $own.jobCompletionWaitSeconds | quote }}
{{- end }}
{{- range $name, $value := $own.extraEnv }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
Where users reach the release: the first Ingress host (https when a TLS entry lists it), else
the first HTTPRoute hostname (https: Gateways terminate TLS); empty when neither names one.
*/}}
{{- define "chorus.publicUrl" -}}
{{- $v := .Values -}}
{{- if and $v.ingress.enabled $v.ingress.hosts -}}
{{- $host := first $v.ingress.hosts -}}
{{- $tls := false -}}
{{- range $v.ingress.tls }}{{ if has $host (default (list) .hosts) }}{{ $tls = true }}{{ end }}{{ end -}}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host -}}
{{- else if and $v.httpRoute.enabled $v.httpRoute.hostnames -}}
{{- printf "https://%s" (first $v.httpRoute.hostnames) -}}
{{- end -}}
{{- end }}

{{/* Secret environment variables of a service (secretKeyRef). Args: {root, key}. */}}
{{- define "chorus.secretEnv" -}}
{{- $secret := include "chorus.secretName" .root }}
{{- $svc := get (include "chorus.services" .root | fromYaml) .key }}
{{- $sentinels := include "chorus.redisSentinels" .root }}
{{- $names := list (ternary "REDIS_PASSWORD" "REDIS_URL" (ne $sentinels "")) "JWT_SECRET" }}
{{- if $svc.database }}
{{- $names = prepend $names "DATABASE_URL" }}
{{- end }}
{{- if eq .key "llmGateway" }}
{{- $names = append $names "GATEWAY_API_KEYS" }}
{{- end }}
{{- if eq .key "worker" }}
{{- $names = append $names "LLM_GATEWAY_API_KEY" }}
{{- end }}
{{- range $names }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- /* Optional: an existingSecret without them means no Sentinel password, no cluster. */}}
{{- $optional := list }}
{{- if $sentinels }}
{{- $optional = append $optional "REDIS_SENTINEL_PASSWORD" }}
{{- end }}
{{- if $svc.events }}
{{- $optional = append $optional "REALTIME_REDIS_CLUSTER" }}
{{- end }}
{{- range $optional }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- if eq .key "worker" }}
{{- range list "SMTP_USERNAME" "SMTP_PASSWORD" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level security context shared by the chart's pods. */}}
{{- define "chorus.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context shared by the chart's containers. */}}
{{- define "chorus.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
checkov skips shared by every workload. Reasons are part of the annotation; see the README's
"Security checks" section. Args: root.
*/}}
{{- define "chorus.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=Images are pinned by immutable version tag; set <service>.image.digest to pin by digest at release time
checkov.io/skip2: CKV_K8S_15=Tags are immutable versions; IfNotPresent avoids a registry round-trip on every restart (set image.pullPolicy to Always if your registry allows retagging)
{{- if not .Values.networkPolicy.enabled }}
checkov.io/skip3: CKV2_K8S_6=NetworkPolicy is opt-in (networkPolicy.enabled) because it needs the cluster's ingress controller and Prometheus selectors; production values enable it
{{- end }}
{{- end }}
