#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for the chart's tests: etcd (Debian's etcd-server),
# kube-apiserver, kube-controller-manager and kube-scheduler (built from the Go module proxy through the wrapper
# module scripts/cluster/), and kwok (sigs.k8s.io/kwok), which plays the kubelet of simulated nodes: pods are
# scheduled, marked running and ready, and never run. KEDA's and the Prometheus Operator's CRDs are installed
# from their Go modules. helm and kubectl are built at pinned versions beside them.
#
#   scripts/cluster.sh build    the binaries, cached across clones in $PADELLM_CLUSTER_CACHE (a cold build takes
#                               about 12 minutes on 2 cores)
#   scripts/cluster.sh start    build if needed, then start everything; prints KUBECONFIG=...
#   scripts/cluster.sh stop     stop it and delete its state
#   scripts/cluster.sh env      KUBECONFIG and PATH lines for `eval`
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
K8S_VERSION=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' scripts/cluster/go.mod)
KWOK_VERSION=v0.8.0
HELM_VERSION=v4.3.2
KEDA_VERSION=v2.20.2
PROMETHEUS_OPERATOR_VERSION=v0.85.0
CACHE=${PADELLM_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/padellm-ner/cluster}
BIN=$CACHE/k8s-$K8S_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION/bin
RUN=$ROOT/.cache/cluster/run
PORT=${PADELLM_CLUSTER_PORT:-16443}
ETCD_PORT=${PADELLM_CLUSTER_ETCD_PORT:-12379}
KUBECONFIG_FILE=$RUN/admin.kubeconfig

build() {
  local wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm) missing=0
  for b in "${wanted[@]}"; do [ -x "$BIN/$b" ] || missing=1; done
  [ "$missing" = 0 ] && return
  mkdir -p "$BIN"
  echo "cluster: building Kubernetes $K8S_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION into $BIN" >&2
  # the version the binaries report (helm and kubectl compare it): a module build carries none of its own
  local v=${K8S_VERSION#v} ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=${v%%.*} -X $pkg.gitMinor=$(echo "$v" | cut -d. -f2)"
  done
  (cd scripts/cluster && go build -ldflags "$ldflags" -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  GOBIN=$BIN go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  GOBIN=$BIN go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

certs() {
  local d=$RUN/pki
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=padellm-test-ca" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$d/apiserver.key" -out "$d/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >"$d/apiserver.ext"
  openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3 \
    -extfile "$d/apiserver.ext" -out "$d/apiserver.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout "$d/admin.key" -out "$d/admin.csr" 2>/dev/null
  openssl x509 -req -in "$d/admin.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3 -out "$d/admin.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  cat >"$KUBECONFIG_FILE" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster: {server: "https://127.0.0.1:$PORT", certificate-authority: "$d/ca.crt"}
users:
  - name: admin
    user: {client-certificate: "$d/admin.crt", client-key: "$d/admin.key"}
contexts:
  - name: test
    context: {cluster: test, user: admin}
current-context: test
KUBECONFIG
}

daemon() {  # name, command...: start in the background, logs and pid under $RUN
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

wait_for() {  # what, seconds, command...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "cluster: $what did not come up in ${seconds} s" >&2
  tail -n 30 "$RUN"/*.log >&2 || true
  return 1
}

start() {
  build
  if [ -f "$RUN/kube-apiserver.pid" ] && kill -0 "$(cat "$RUN/kube-apiserver.pid")" 2>/dev/null; then
    echo "KUBECONFIG=$KUBECONFIG_FILE"; return
  fi
  rm -rf "$RUN"; mkdir -p "$RUN"
  certs
  local kubectl=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE")
  daemon etcd etcd --data-dir "$RUN/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls http://127.0.0.1:0
  wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  daemon kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$PORT" \
    --tls-cert-file "$RUN/pki/apiserver.crt" --tls-private-key-file "$RUN/pki/apiserver.key" \
    --client-ca-file "$RUN/pki/ca.crt" --service-account-key-file "$RUN/pki/sa.pub" \
    --service-account-signing-key-file "$RUN/pki/sa.key" --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC
  wait_for kube-apiserver 120 "${kubectl[@]}" get --raw /readyz
  daemon kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --use-service-account-credentials=false \
    --service-account-private-key-file "$RUN/pki/sa.key" --root-ca-file "$RUN/pki/ca.crt"
  daemon kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false
  # kwok's own "fast" stages: nodes become ready and keep a heartbeat, pods become ready, finish and go
  local stages
  stages=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')/kustomize/stage
  for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml \
    pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cat "$stages/$f"; echo "---"
  done >"$RUN/kwok-stages.yaml"
  daemon kwok "$BIN/kwok" --config "$RUN/kwok-stages.yaml" --kubeconfig "$KUBECONFIG_FILE" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake --node-ip 10.244.0.1 --cidr 10.244.1.0/24 \
    --server-address 127.0.0.1:0
  # two simulated nodes, large enough for every profile's requests (GPU ones carry nvidia.com/gpu)
  for i in 0 1; do
    "${kubectl[@]}" apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake}
  labels: {kubernetes.io/os: linux, kubernetes.io/arch: amd64, kubernetes.io/hostname: kwok-node-$i, type: kwok, nvidia.com/gpu.present: "true"}
spec: {}
status:
  allocatable: {cpu: "64", memory: 512Gi, pods: "110", nvidia.com/gpu: "8"}
  capacity: {cpu: "64", memory: 512Gi, pods: "110", nvidia.com/gpu: "8"}
NODE
  done
  wait_for "a ready node" 60 sh -c "'$BIN/kubectl' --kubeconfig '$KUBECONFIG_FILE' get nodes --no-headers | grep -q ' Ready'"
  crds
  echo "KUBECONFIG=$KUBECONFIG_FILE"
}

crds() {  # KEDA's and the Prometheus Operator's CRDs, from their Go modules (the release's own files)
  local keda prom
  keda=$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  prom=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" apply --server-side -f "$keda/config/crd/bases/keda.sh_scaledobjects.yaml" \
    -f "$keda/config/crd/bases/keda.sh_triggerauthentications.yaml" \
    -f "$prom/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" >/dev/null
  "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" wait --for condition=established --timeout 60s \
    crd/scaledobjects.keda.sh crd/triggerauthentications.keda.sh crd/servicemonitors.monitoring.coreos.com >/dev/null
}

stop() {  # each process in turn, waited for (the API server drains for a few seconds), killed after 30 s
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    [ -f "$RUN/$name.pid" ] || continue
    local pid
    pid=$(cat "$RUN/$name.pid")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$RUN"
}

case "${1:-}" in
  build) build ;;
  crds) crds ;;
  start) start ;;
  stop) stop ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_FILE PATH=$BIN:\$PATH" ;;
  *) echo "usage: $0 build|start|stop|env" >&2; exit 2 ;;
esac
