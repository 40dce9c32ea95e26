#!/usr/bin/env bash
# The committed Python stubs (egress/v1/*) and google_rpc.binpb are what
# Debian's protoc makes from the protos now. To refresh them:
#   client/python/stubs_fresh_test.sh --write
set -euo pipefail
root=$(dirname "$(readlink -f client/python/pyproject.toml)")/../..
[ "${1:-}" = --write ] && root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d "${TEST_TMPDIR:-/tmp}/stubs.XXXXXX")
/usr/bin/protoc -I"$root/proto" -I/usr/include --python_out="$out" \
  --pyi_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
  "$root/proto/egress/v1/egress.proto"
/usr/bin/protoc -I"$root/third_party/googleapis" -I/usr/include \
  --include_imports --descriptor_set_out="$out/google_rpc.binpb" \
  google/rpc/status.proto google/rpc/error_details.proto
pkg="$root/client/python"
pairs=(
  "egress/v1/egress_pb2.py:egress/v1/egress_pb2.py"
  "egress/v1/egress_pb2.pyi:egress/v1/egress_pb2.pyi"
  "egress/v1/egress_pb2_grpc.py:egress/v1/egress_pb2_grpc.py"
  "google_rpc.binpb:egress_client/google_rpc.binpb"
)
stale=0
for pair in "${pairs[@]}"; do
  made=${pair%%:*} committed=${pair##*:}
  if [ "${1:-}" = --write ]; then
    cp "$out/$made" "$pkg/$committed"
  elif ! cmp -s "$out/$made" "$pkg/$committed"; then
    echo "STALE: client/python/$committed differs from what protoc makes now;" \
      "run client/python/stubs_fresh_test.sh --write" >&2
    stale=1
  fi
done
[ "$stale" = 0 ] && echo "PASS: the committed Python stubs are fresh"
exit "$stale"
