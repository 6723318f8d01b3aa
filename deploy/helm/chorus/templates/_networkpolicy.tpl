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
{{- else }}
- to:
    {{- toYaml .Values.networkPolicy.externalRedis.to | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.externalRedis.port }}
      protocol: TCP
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
