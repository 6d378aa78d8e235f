{{/* The chart name (nameOverride wins). */}}
{{- define "k3sops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object's name: RELEASE-NAME, or RELEASE when it already holds NAME. */}}
{{- define "k3sops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "k3sops.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "k3sops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "k3sops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The labels the Deployment selects its pods by (and the Service and NetworkPolicy). */}}
{{- define "k3sops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "k3sops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The ServiceAccount the service runs as. */}}
{{- define "k3sops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "k3sops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The serve pods' labels: the Service and the Deployment select these, so the backup jobs'
pods (same selectorLabels, for the NetworkPolicy) never become endpoints. */}}
{{- define "k3sops.serveSelectorLabels" -}}
{{ include "k3sops.selectorLabels" . }}
app.kubernetes.io/component: serve
{{- end -}}

{{/* The image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "k3sops.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Where the secret files are mounted; platform.yaml names these paths, never a value. */}}
{{- define "k3sops.secretsDir" -}}/etc/k3sops/secrets{{- end -}}

{{/* The Lease's name (RBAC may name it too). */}}
{{- define "k3sops.leaseName" -}}
{{- default (include "k3sops.fullname" .) .Values.serve.lease.name -}}
{{- end -}}

{{/* platform.yaml: `config` with what the chart decides (listener, Lease, TLS, the history
store, the paths of mounted secrets) set over it. */}}
{{- define "k3sops.platformConfig" -}}
{{- $dir := include "k3sops.secretsDir" . -}}
{{- $cfg := dict -}}
{{- if kindIs "string" .Values.config -}}
{{- /* --set-file config=platform.yaml passes the file as a string */ -}}
{{- $cfg = fromYaml .Values.config -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "config (platform.yaml) is not valid YAML: %s" (get $cfg "Error")) -}}
{{- end -}}
{{- else if .Values.config -}}
{{- $cfg = deepCopy .Values.config -}}
{{- end -}}
{{- $serve := get $cfg "serve" | default dict -}}
{{- $_ := set $serve "listen" (printf "0.0.0.0:%v" .Values.serve.port) -}}
{{- $_ := set $serve "lease" (dict "namespace" .Release.Namespace "name" (include "k3sops.leaseName" .) "duration" .Values.serve.lease.duration) -}}
{{- if .Values.serve.tls.enabled -}}
{{- $_ := set $serve "tls" (dict "cert_file" "/etc/k3sops/tls/tls.crt" "key_file" "/etc/k3sops/tls/tls.key") -}}
{{- else -}}
{{- $_ := unset $serve "tls" -}}
{{- end -}}
{{- if .Values.serve.alertmanagerTokenSecret.name -}}
{{- $_ := unset $serve "alertmanager_token_env" -}}
{{- $_ := set $serve "alertmanager_token_file" (printf "%s/alertmanager/token" $dir) -}}
{{- end -}}
{{- $receivers := get $serve "receivers" | default list -}}
{{- range .Values.serve.receivers -}}
{{- $receivers = append $receivers (dict "name" .name "type" (.type | default "webhook") "url_file" (printf "%s/receivers/%s/url" $dir .name)) -}}
{{- end -}}
{{- if $receivers -}}
{{- $_ := set $serve "receivers" $receivers -}}
{{- end -}}
{{- $_ := set $cfg "serve" $serve -}}
{{- if .Values.database.url -}}
{{- if regexMatch "^[a-z]+://[^/@]*:[^/@]*@" .Values.database.url -}}
{{- fail "database.url must not hold the password (k3sops refuses it): put it in a Secret and name it with database.passwordSecret.name" -}}
{{- end -}}
{{- $state := dict "database_url" .Values.database.url -}}
{{- if .Values.database.passwordSecret.name -}}
{{- $_ := set $state "password_file" (printf "%s/database/password" $dir) -}}
{{- end -}}
{{- $_ := set $cfg "state" $state -}}
{{- end -}}
{{- $backup := get $cfg "backup" -}}
{{- if and .Values.backup.passwordSecret.name (kindIs "map" $backup) -}}
{{- $_ := unset $backup "password_env" -}}
{{- $_ := set $backup "password_file" (printf "%s/restic/password" $dir) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The container's mounts and the pod's volumes for platform.yaml, the state, /tmp and the
secret files (shared by the serve Deployment and the backup CronJobs). */}}
{{- define "k3sops.volumeMounts" -}}
- name: config
  mountPath: /etc/k3sops/config
  readOnly: true
- name: state
  mountPath: /var/lib/k3sops
- name: tmp
  mountPath: /tmp
{{- if .Values.serve.tls.enabled }}
- name: tls
  mountPath: /etc/k3sops/tls
  readOnly: true
{{- end }}
{{- if .Values.serve.alertmanagerTokenSecret.name }}
- name: alertmanager-token
  mountPath: {{ include "k3sops.secretsDir" . }}/alertmanager
  readOnly: true
{{- end }}
{{- if and .Values.database.url .Values.database.passwordSecret.name }}
- name: database-password
  mountPath: {{ include "k3sops.secretsDir" . }}/database
  readOnly: true
{{- end }}
{{- if .Values.backup.passwordSecret.name }}
- name: restic-password
  mountPath: {{ include "k3sops.secretsDir" . }}/restic
  readOnly: true
{{- end }}
{{- range .Values.serve.receivers }}
- name: receiver-{{ .name }}
  mountPath: {{ include "k3sops.secretsDir" $ }}/receivers/{{ .name }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "k3sops.volumes" -}}
- name: config
  configMap:
    name: {{ include "k3sops.fullname" . }}
- name: state
  emptyDir:
    sizeLimit: {{ .Values.stateSizeLimit }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if .Values.serve.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "serve.tls.secretName is required with serve.tls.enabled" .Values.serve.tls.secretName }}
    defaultMode: 0440
    items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
{{- end }}
{{- with .Values.serve.alertmanagerTokenSecret }}
{{- if .name }}
- name: alertmanager-token
  secret:
    secretName: {{ .name }}
    defaultMode: 0440
    items: [{key: {{ .key | quote }}, path: token}]
{{- end }}
{{- end }}
{{- if and .Values.database.url .Values.database.passwordSecret.name }}
- name: database-password
  secret:
    secretName: {{ .Values.database.passwordSecret.name }}
    defaultMode: 0440
    items: [{key: {{ .Values.database.passwordSecret.key | quote }}, path: password}]
{{- end }}
{{- with .Values.backup.passwordSecret }}
{{- if .name }}
- name: restic-password
  secret:
    secretName: {{ .name }}
    defaultMode: 0440
    items: [{key: {{ .key | quote }}, path: password}]
{{- end }}
{{- end }}
{{- range .Values.serve.receivers }}
- name: receiver-{{ .name }}
  secret:
    secretName: {{ required (printf "serve.receivers[%s].urlSecret.name is required" .name) (.urlSecret).name }}
    defaultMode: 0440
    items: [{key: {{ (.urlSecret).key | default "url" | quote }}, path: url}]
{{- end }}
{{- end -}}

{{/* The environment every k3sops container gets: where platform.yaml and the state are, and a
writable HOME (the root filesystem is read-only). */}}
{{- define "k3sops.env" -}}
- name: K3SOPS_CONFIG
  value: /etc/k3sops/config/platform.yaml
- name: K3SOPS_STATE_DIR
  value: /var/lib/k3sops
- name: HOME
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
