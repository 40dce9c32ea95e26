#!/usr/bin/env bash
# Installs what egress needs to build, run and test, only when missing: Debian
# packages, and the Node client's npm dependencies (from its lockfile).
# Idempotent: with everything present it runs no apt command and returns in well under
# a second. Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  bazel-bootstrap bazel-rules-java
  g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev
  libssl-dev dpkg-dev patch xz-utils debian-archive-keyring
  prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-grpcio python3-grpc-tools
  kubectl prometheus
  python3-httpbin gunicorn nginx
  openssl ca-certificates
)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cpp-httplib 0.18.7 from Debian 13's source package, once.
scripts/fetch-httplib.sh

# Node.js for the Node client: the machine's own if it has one, else Debian's.
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs npm" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
# The Node client's dependencies, exactly as its lockfile says; only when they
# are missing or the lockfile changed.
if [ ! -f client/node/node_modules/.package-lock.json ] ||
   [ client/node/package-lock.json -nt client/node/node_modules/.package-lock.json ]; then
  echo "setup: npm ci in client/node" >&2
  (cd client/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if [ ! -f k8s/validate/node_modules/.package-lock.json ] ||
   [ k8s/validate/package-lock.json -nt k8s/validate/node_modules/.package-lock.json ]; then
  echo "setup: npm ci in k8s/validate" >&2
  (cd k8s/validate && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
