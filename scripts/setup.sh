#!/usr/bin/env bash
# Installs what egress needs, only when missing, from Debian's archive and the
# npm registry (lockfiles) alone; nothing is assumed preinstalled.
#   scripts/setup.sh           what building and running egressd need
#   scripts/setup.sh --tests   that, plus what `bazel test //...` needs (test
#                              libraries, real servers, kubectl, promtool, Node,
#                              buf)
# Idempotent: with everything present it runs no apt or npm command and returns
# in well under a second. Runs apt as root, or through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=false
case "${1:-}" in
  "") ;;
  --tests) tests=true ;;
  *) echo "usage: scripts/setup.sh [--tests]" >&2; exit 2 ;;
esac

# Build and run: Bazel, the C++ libraries, and what fetch-httplib.sh uses.
build_packages=(
  bazel-bootstrap bazel-rules-java
  g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev
  libssl-dev dpkg-dev patch xz-utils debian-archive-keyring
  prometheus-cpp-dev
  # hiredis: the Redis protocol of the rate limits shared across replicas.
  libhiredis-dev
  # tcmalloc (gperftools), egressd's allocator.
  libgoogle-perftools-dev
  openssl ca-certificates
)
test_packages=(
  libgtest-dev libgmock-dev libbenchmark-dev
  # The Python package, installed with pip into a venv over Debian's grpcio.
  python3 python3-grpcio python3-protobuf python3-venv python3-pip
  python3-setuptools
  # The adapters' tests: the real httpx and requests.
  python3-httpx python3-requests
  # The Go client, built offline from Debian's Go packages (protobuf 1.5's
  # github.com/golang/protobuf: the 1.3 one cannot decode today's stubs).
  golang-go golang-google-grpc-dev golang-google-protobuf-dev
  golang-google-genproto-dev golang-github-golang-protobuf-1-5-dev
  protoc-gen-go protoc-gen-go-grpc
  # Real servers nobody here wrote, for the conformance tests.
  python3-httpbin gunicorn nginx
  # Upstream proxies nobody here wrote, for the origins tests.
  squid tinyproxy
  # promtool and a real Prometheus for the dashboard and alert tests.
  prometheus
  # The Redis the shared rate limits are tested with.
  redis-server
)
packages=("${build_packages[@]}")
$tests && packages+=("${test_packages[@]}")

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
apt_install() {
  echo "setup: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if $tests; then
  # kubectl renders the manifests offline (kubectl kustomize). It is not a
  # Debian package; Debian's kubernetes-client ships one (1.20). A kubectl
  # already on the machine is used as it is.
  command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
  # Node.js for the Node client and the manifest checks: the machine's own if it
  # has one, else Debian's.
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
fi
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# cpp-httplib 0.18.7 from Debian 13's source package, once.
scripts/fetch-httplib.sh

# What is installed now, for //third_party:system_libs.bzl: when this list
# changes, Bazel looks for the libraries again (its repository is cached).
list=third_party/installed-packages.txt
dpkg-query -W -f='${Package} ${Version}\n' "${build_packages[@]}" "${test_packages[@]}" \
  2>/dev/null | sort >"$list.new" || true
if cmp -s "$list.new" "$list"; then rm -f "$list.new"; else mv "$list.new" "$list"; fi

$tests || exit 0
# npm dependencies exactly as their lockfiles say; only when they are missing or
# the lockfile changed.
for dir in client/node k8s/validate proto; do
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
     [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "setup: npm ci in $dir" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
