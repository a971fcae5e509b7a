{{/* Chart name. */}}
{{- define "valkey.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "valkey.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "valkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Annotations of the definitions. Their names are fixed (valkey-data, valkey-sentinel,
valkey-coordinator), so an addon upgrade updates them in place: skip-immutable-check lets the
controller accept the new version of a definition.
*/}}
{{- define "valkey.definitionAnnotations" -}}
kubeblocks.io/crd-api-version: apps.kubeblocks.io/v1
apps.kubeblocks.io/skip-immutable-check: "true"
{{- end }}

{{/* The Valkey image of one release. */}}
{{- define "valkey.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .root.Values.image.repository .release -}}
{{- end }}

{{/* The coordinator image (tag defaults to the chart's appVersion). */}}
{{- define "valkey.coordinatorImage" -}}
{{- $registry := .Values.coordinatorImage.registry | default .Values.image.registry -}}
{{- $tag := .Values.coordinatorImage.tag | default .Chart.AppVersion -}}
{{- printf "%s/%s:%s" $registry .Values.coordinatorImage.repository $tag -}}
{{- end }}

{{/* The newest Valkey release (the default image of definitions and backups). */}}
{{- define "valkey.latestRelease" -}}
{{- last .Values.valkeyReleases -}}
{{- end }}

{{/*
Scripts ConfigMap name, versioned by the chart version: an addon upgrade adds a new ConfigMap
and keeps the old one (resource-policy keep), so pods of definitions that still name the old
one can still start.
*/}}
{{- define "valkey.scriptsName" -}}
{{- printf "valkey-scripts-%s" .Chart.Version -}}
{{- end }}

{{/* Config template ConfigMap name. */}}
{{- define "valkey.configName" -}}
valkey-config-template
{{- end }}

{{/* The ParametersDefinition's name for the config template (cmpd configs[].name). */}}
{{- define "valkey.configTemplateName" -}}
valkey-config
{{- end }}

{{/* Password generation of every generated password. */}}
{{- define "valkey.passwordConfig" -}}
length: {{ .Values.passwordConfig.length }}
numDigits: {{ .Values.passwordConfig.numDigits }}
numSymbols: {{ .Values.passwordConfig.numSymbols }}
letterCase: {{ .Values.passwordConfig.letterCase }}
{{- end }}

{{/*
The reconfigure action of the data pods. It is declared twice with this one definition: on the
config template (configs[].reconfigure), which is what the parameters controller calls for a
change of dynamic parameters without a restart, and as lifecycleActions.reconfigure, the
component-level fallback the ComponentVersion pins an image for. KubeBlocks calls it once per
changed parameter with `NAME VALUE` appended to the command; the script ignores those
arguments: the binary compares the whole updated file with the running values.
*/}}
{{- define "valkey.reconfigureAction" -}}
# 30 s, budget 20 s: one CONFIG GET, the CONFIG SETs that differ and their read-back.
timeoutSeconds: 30
targetPodSelector: All
exec:
  container: valkey
  command:
    - /scripts/reconfigure.sh
    - --timeout-ms
    - "20000"
{{- end }}
