#!/usr/bin/env bash
# The Go client (client/go), built offline from Debian's packages (golang-go,
# golang-google-grpc-dev, golang-google-protobuf-dev, genproto) in GOPATH
# mode: its committed stubs match what protoc-gen-go and protoc-gen-go-grpc
# make from the proto now, `go vet` is clean, the example builds, and its
# tests pass against a real egressd (egress.Transport's with net/http's
# http.Client, over tests/client/conformance.json, httpbin and the extras). Writes JUnit XML to $XML_OUTPUT_FILE so
# that CI counts each test.
set -euo pipefail
export EGRESSD="$PWD/service/egressd"
src=$(dirname "$(readlink -f client/go/go.mod)")
root=$(cd "$src/../.." && pwd)
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/go.XXXXXX")
for tool in go protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null ||
    { echo "$tool is missing: run scripts/setup.sh --tests" >&2; exit 1; }
done

# Stubs: generated anew, compared with the committed ones.
mkdir -p "$work/gen"
/usr/bin/protoc -I"$root/proto" -I/usr/include \
  --go_out="$work/gen" --go_opt=module=egress.local/client/go \
  --go-grpc_out="$work/gen" --go-grpc_opt=module=egress.local/client/go \
  "$root/proto/egress/v1/egress.proto"
for f in egress.pb.go egress_grpc.pb.go; do
  if ! cmp -s "$work/gen/egressv1/$f" "$src/egressv1/$f"; then
    echo "STALE: client/go/egressv1/$f differs from what protoc makes now; run" >&2
    echo "  (cd client/go && protoc -I../../proto -I/usr/include --go_out=. --go_opt=module=egress.local/client/go --go-grpc_out=. --go-grpc_opt=module=egress.local/client/go ../../proto/egress/v1/egress.proto)" >&2
    exit 1
  fi
done
echo "ok: the committed Go stubs are fresh"

# GOPATH mode over Debian's Go sources: nothing is downloaded.
pkg="$work/gopath/src/egress.local/client/go"
mkdir -p "$(dirname "$pkg")"
cp -rL "$src" "$pkg"
export GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" \
  GOCACHE="$work/cache" GOFLAGS= GOPROXY=off CGO_ENABLED=0
cd "$pkg"
go vet ./...
go build -o "$work/example" ./example
echo "ok: go vet, and the example builds"
set +e
# Under conformance_servers.py: the transport's tests walk conformance.json
# against the egressd, httpbin and extras it starts.
/usr/bin/python3 "$TEST_SRCDIR/$TEST_WORKSPACE/tests/client/conformance_servers.py" -- \
  go test -v -count=1 . 2>&1 | tee "$work/test.log"
status=${PIPESTATUS[0]}
set -e
if [ -n "${XML_OUTPUT_FILE:-}" ]; then
  {
    echo '<?xml version="1.0" encoding="UTF-8"?>'
    echo '<testsuites><testsuite name="egress.local/client/go">'
    awk '/^ *--- PASS: /{printf "<testcase name=\"%s\" classname=\"go\" status=\"run\"/>\n", $3}
         /^ *--- FAIL: /{printf "<testcase name=\"%s\" classname=\"go\" status=\"run\"><failure message=\"failed\"/></testcase>\n", $3}' \
      "$work/test.log"
    echo '</testsuite></testsuites>'
  } >"$XML_OUTPUT_FILE"
fi
exit "$status"
