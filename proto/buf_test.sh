#!/usr/bin/env bash
# buf lint (STANDARD) and buf breaking (FILE, against the committed v1 image
# egress/v1/v1.binpb) on proto/egress/v1, with buf from proto/package-lock.json.
# Then proves that both checks bite: a copy of the module with a renamed field
# must fail `buf breaking`, and one with a service not named *Service must fail
# `buf lint`. Nothing is fetched: the module imports only well-known types.
set -euo pipefail
# The runfiles link to the sources; node_modules lives beside the real ones.
proto_dir=$(dirname "$(readlink -f proto/buf.yaml)")
buf="$proto_dir/node_modules/.bin/buf"
if [ ! -x "$buf" ]; then
  echo "proto/node_modules is missing: run scripts/setup.sh --tests" >&2
  exit 1
fi
export BUF_CACHE_DIR="${TEST_TMPDIR:-$(mktemp -d)}/buf-cache"
image="$proto_dir/egress/v1/v1.binpb"

"$buf" --version
echo "buf lint proto"
(cd "$proto_dir" && "$buf" lint)
echo "buf breaking proto --against egress/v1/v1.binpb"
(cd "$proto_dir" && "$buf" breaking --against "$image")

# A copy of the module (buf.yaml and the .proto files) to break on purpose.
copy() {
  local dir
  dir=$(mktemp -d "${TEST_TMPDIR:-/tmp}/buf.XXXXXX")
  mkdir -p "$dir/egress/v1"
  cp "$proto_dir/buf.yaml" "$dir/"
  cp "$proto_dir/egress/v1/egress.proto" "$dir/egress/v1/"
  echo "$dir"
}

dir=$(copy)
sed -i 's/string url = 2;/string address = 2;/' "$dir/egress/v1/egress.proto"
if out=$(cd "$dir" && "$buf" breaking --against "$image" 2>&1); then
  echo "FAIL: buf breaking accepted a renamed field" >&2
  exit 1
fi
grep -q 'changed name from "url" to "address"' <<<"$out" ||
  { echo "FAIL: unexpected buf breaking output: $out" >&2; exit 1; }
echo "ok: a renamed field is a breaking change"

dir=$(copy)
sed -i 's/^service EgressService {/service Egress {/' "$dir/egress/v1/egress.proto"
if out=$(cd "$dir" && "$buf" lint 2>&1); then
  echo "FAIL: buf lint accepted a service named Egress" >&2
  exit 1
fi
grep -q 'SERVICE_SUFFIX' <<<"$out" || grep -q 'Service name "Egress"' <<<"$out" ||
  { echo "FAIL: unexpected buf lint output: $out" >&2; exit 1; }
echo "ok: a service not named *Service fails lint"
echo "PASS"
