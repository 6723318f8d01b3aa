{{/* Peers and rules shared by networkpolicies.yaml. */}}

{{- define "chorus.np.peer" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/name: {{ include "chorus.name" .root }}
    app.kubernetes.io/instance: {{ .root.Release.Name }}
    app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- define "chorus.np.redisEgress" -}}
{{- if .Values.redis.enabled }}
- to:
    - {{- include "chorus.np.peer" (dict "root" . "component" "redis") | nindent 6 }}
  ports:
    - port: 6379
      protocol: TCP
    {{- if eq .Values.redis.mode "sentinel" }}
    - port: 26379
      protocol: TCP
    {{- end }}
{{- else }}
- to:
    {{- toYaml .Values.networkPolicy.externalRedis.to | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.externalRedis.port }}
      protocol: TCP
{{- if .Values.redis.external.sentinels }}
- to:
    {{- toYaml .Values.networkPolicy.externalSentinels.to | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.externalSentinels.port }}
      protocol: TCP
{{- end }}
{{- end }}
{{- end }}
{{- define "chorus.np.clusterEgress" -}}
{{- if .Values.networkPolicy.redisCluster.enabled }}
- to:
    {{- toYaml .Values.networkPolicy.redisCluster.to | nindent 4 }}
  ports:
    {{- range .Values.networkPolicy.redisCluster.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}
{{- define "chorus.np.postgresEgress" -}}
{{- if .Values.postgres.enabled }}
- to:
    - {{- include "chorus.np.peer" (dict "root" . "component" "postgres") | nindent 6 }}
  ports:
    - port: 5432
      protocol: TCP
{{- else }}
- to:
    {{- toYaml .Values.networkPolicy.externalPostgres.to | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.externalPostgres.port }}
      protocol: TCP
{{- end }}
{{- end }}
{{- define "chorus.np.fromController" -}}
- namespaceSelector:
    {{- toYaml .Values.networkPolicy.ingressController.namespaceSelector | nindent 4 }}
  podSelector:
    {{- toYaml .Values.networkPolicy.ingressController.podSelector | nindent 4 }}
{{- end }}
{{- define "chorus.np.fromPrometheusAndTests" -}}
- namespaceSelector:
    {{- toYaml .Values.networkPolicy.prometheus.namespaceSelector | nindent 4 }}
  podSelector:
    {{- toYaml .Values.networkPolicy.prometheus.podSelector | nindent 4 }}
- {{- include "chorus.np.peer" (dict "root" . "component" "test") | nindent 2 }}
{{- end }}
