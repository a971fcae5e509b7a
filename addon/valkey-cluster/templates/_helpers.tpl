{{/*
The Cluster's name: clusterName, else the release name. Every name KubeBlocks derives from it
(<name>-valkey-sentinel-headless, the pods' controller-revision-hash labels) must stay a
valid DNS label of at most 63 characters, hence the 30-character bound.
*/}}
{{- define "valkey-cluster.name" -}}
{{- $name := .Values.clusterName | default .Release.Name -}}
{{- if not (regexMatch "^[a-z]([a-z0-9-]*[a-z0-9])?$" $name) -}}
{{- fail (printf "cluster name %q must be a DNS label (lower-case letters, digits and '-', starting with a letter)" $name) -}}
{{- end -}}
{{- if gt (len $name) 30 -}}
{{- fail (printf "cluster name %q is longer than 30 characters; set clusterName" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* The master name the sentinels monitor: the data component's full name. */}}
{{- define "valkey-cluster.masterName" -}}
{{- include "valkey-cluster.name" . }}-valkey
{{- end -}}

{{- define "valkey-cluster.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ include "valkey-cluster.name" . }}
app.kubernetes.io/version: {{ .Values.version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The labels KubeBlocks puts on a component's pods; arg: (list $ "component"). */}}
{{- define "valkey-cluster.podSelector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/instance: {{ include "valkey-cluster.name" $ }}
app.kubernetes.io/managed-by: kubeblocks
apps.kubeblocks.io/component-name: {{ index . 1 }}
{{- end -}}

{{/* resources with requests = limits; arg: the resources value (cpu cores, memory GiB). */}}
{{- define "valkey-cluster.resources" -}}
resources:
  limits:
    cpu: {{ .cpu | toString | quote }}
    memory: {{ printf "%sGi" (.memory | toString) | quote }}
  requests:
    cpu: {{ .cpu | toString | quote }}
    memory: {{ printf "%sGi" (.memory | toString) | quote }}
{{- end -}}

{{/* Pod anti-affinity among one component's pods; arg: (list $ "component"). */}}
{{- define "valkey-cluster.schedulingPolicy" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- with $.Values.podAntiAffinity }}
{{- if .enabled }}
schedulingPolicy:
  affinity:
    podAntiAffinity:
      {{- if eq .type "Required" }}
      requiredDuringSchedulingIgnoredDuringExecution:
        - labelSelector:
            matchLabels:
              {{- include "valkey-cluster.podSelector" (list $ $component) | nindent 14 }}
          topologyKey: {{ .topologyKey }}
      {{- else }}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            labelSelector:
              matchLabels:
                {{- include "valkey-cluster.podSelector" (list $ $component) | nindent 16 }}
            topologyKey: {{ .topologyKey }}
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The Secret holding the cluster's one CA and certificate (UserProvided issuer). */}}
{{- define "valkey-cluster.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-valkey-tls" (include "valkey-cluster.name" .)) -}}
{{- end -}}

{{/* A component's tls and issuer fields. */}}
{{- define "valkey-cluster.tls" -}}
{{- if .Values.tls.enabled }}
tls: true
issuer:
  name: {{ .Values.tls.issuer }}
  {{- if eq .Values.tls.issuer "UserProvided" }}
  secretRef:
    name: {{ include "valkey-cluster.tlsSecretName" . }}
    namespace: {{ .Release.Namespace }}
    ca: ca.crt
    cert: tls.crt
    key: tls.key
  {{- end }}
{{- end }}
{{- end -}}

{{/*
The label matchers that confine a PromQL selector to this cluster's coordinators, as the
PodMonitor labels their series (namespace and cluster).
*/}}
{{- define "valkey-cluster.metricSelector" -}}
namespace="{{ .Release.Namespace }}",cluster="{{ include "valkey-cluster.name" . }}"
{{- end -}}
