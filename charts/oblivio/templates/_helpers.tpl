{{- define "oblivio.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "oblivio.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* One ServiceAccount per workload: (include "oblivio.serviceAccountName" (list $ "schedule")) */}}
{{- define "oblivio.serviceAccountName" -}}
{{- $root := index . 0 -}}
{{- $sa := index $root.Values.serviceAccounts (index . 1) -}}
{{- if $sa.create -}}
{{- default (printf "%s-%s" (include "oblivio.fullname" $root) (index . 1)) $sa.name -}}
{{- else -}}
{{- required (printf "serviceAccounts.%s.name: name the existing ServiceAccount (create is false)" (index . 1)) $sa.name -}}
{{- end -}}
{{- end -}}

{{/* The namespace the Kubeflow pipeline, its runs and the scheduling permissions live in. */}}
{{- define "oblivio.kubeflowNamespace" -}}
{{- default .Release.Namespace .Values.kubeflow.namespace -}}
{{- end -}}

{{/* The image every workload runs: by digest when one is given, else by tag (default: the
chart's appVersion, the version the compiled pipeline refers to). */}}
{{- define "oblivio.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The credentials Secret's name: an existing one, or the one this chart creates. */}}
{{- define "oblivio.secretName" -}}
{{- if .Values.credentials.existingSecret -}}
{{- .Values.credentials.existingSecret -}}
{{- else if .Values.credentials.create -}}
{{- .Values.credentials.name -}}
{{- else -}}
{{- fail "credentials: set existingSecret to the Secret with MLFLOW_TRACKING_URI and OBLIVIO_LEDGER_URL, or create: true with values (test installs)" -}}
{{- end -}}
{{- end -}}

{{/* Pod metadata every workload shares: labels (with its component) and annotations
(podAnnotations, Istio's, and any a third argument adds). */}}
{{- define "oblivio.podMetadata" -}}
{{- $root := index . 0 -}}
labels:
  {{- include "oblivio.labels" $root | nindent 2 }}
  app.kubernetes.io/component: {{ index . 1 }}
  {{- with $root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $annotations := merge (dict) ($root.Values.podAnnotations | default dict) }}
{{- if gt (len .) 2 }}
{{- $annotations = merge $annotations (index . 2) }}
{{- end }}
{{- if $root.Values.istio.sidecar }}
{{- $annotations = merge (dict "proxy.istio.io/config" "{\"holdApplicationUntilProxyStarts\": true}") $annotations }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod spec every workload shares: scheduling, pull secrets, the restricted security
context, no Kubernetes API token (nothing here calls the Kubernetes API). */}}
{{- define "oblivio.podSpec" -}}
automountServiceAccountToken: false
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* The control-plane image (no torch): the hooks, the test pod, MLflow and the pipeline's
ledger steps. Same tag as the project image; by its own digest when one is given. */}}
{{- define "oblivio.controlImage" -}}
{{- if .Values.image.controlDigest -}}
{{- printf "%s@%s" .Values.image.controlRepository .Values.image.controlDigest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.controlRepository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A container's shared settings: the control-plane image, the security context. */}}
{{- define "oblivio.container" -}}
image: {{ include "oblivio.controlImage" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{- define "oblivio.env" -}}
- name: HOME
  value: /tmp
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The Kubeflow Pipelines token: projected, audience pipelines.kubeflow.org, renewed by the
kubelet; kfp reads it on every call (KF_PIPELINES_SA_TOKEN_PATH). */}}
{{- define "oblivio.kfpTokenVolume" -}}
- name: kfp-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          audience: {{ .Values.kubeflow.tokenAudience }}
          expirationSeconds: 7200
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "oblivio.kfpTokenMount" -}}
- name: kfp-token
  mountPath: /var/run/secrets/kubeflow/pipelines
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* The arguments every Kubeflow call of the hooks shares. */}}
{{- define "oblivio.kfpArgs" -}}
- {{ printf "--host=%s" .Values.kubeflow.host | quote }}
- {{ printf "--experiment=%s" .Values.kubeflow.experiment | quote }}
- {{ printf "--job-name=%s" .Values.kubeflow.pipelineName | quote }}
- {{ printf "--wait-minutes=%v" .Values.schedule.waitMinutes | quote }}
- --token-file=/var/run/secrets/kubeflow/pipelines/token
{{- with .Values.kubeflow.namespace }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- end -}}

{{/* The script every Job's container runs its arguments under: the command, then (with an
Istio sidecar) a request that stops the sidecar, so the Job's pod can end; the command's exit
status is the pod's. */}}
{{- define "oblivio.runScript" -}}
{{- if .Values.istio.sidecar -}}
"$@"; rc=$?; python -c 'import urllib.request as u; u.urlopen(u.Request("http://127.0.0.1:15020/quitquitquit", method="POST"), timeout=5)' 2>/dev/null; exit $rc
{{- else -}}
exec "$@"
{{- end -}}
{{- end -}}
