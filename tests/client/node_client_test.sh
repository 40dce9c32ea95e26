#!/usr/bin/env bash
# The Node package (client/node): its proto copies match the repository's,
# it refers to nothing outside its folder, its TypeScript declarations
# type-check a caller's code (tsc), and `npm pack` makes a package whose
# tests (node:test) pass against a real egressd, run from the unpacked
# tarball: the client's, and the adapters' (egressFetch, EgressDispatcher,
# the openai SDK). node_modules come from scripts/setup.sh (npm ci); nothing is
# fetched here.
set -euo pipefail
export EGRESSD="$PWD/service/egressd"
# The runfiles link to the sources; node_modules lives beside the real ones.
node_dir=$(dirname "$(readlink -f client/node/package.json)")
root=$(cd "$node_dir/../.." && pwd)
if [ ! -d "$node_dir/node_modules/@grpc/grpc-js" ] || [ ! -d "$node_dir/node_modules/openai" ]; then
  echo "client/node/node_modules is missing: run scripts/setup.sh --tests" >&2
  exit 1
fi
for pair in "proto/egress/v1/egress.proto:proto/egress/v1/egress.proto" \
  "third_party/googleapis/google/rpc/status.proto:proto/google/rpc/status.proto" \
  "third_party/googleapis/google/rpc/error_details.proto:proto/google/rpc/error_details.proto"; do
  if ! cmp -s "$root/${pair%%:*}" "$node_dir/${pair##*:}"; then
    echo "STALE: client/node/${pair##*:} differs from ${pair%%:*}; copy it over" >&2
    exit 1
  fi
done
if grep -n "'\.\./\.\.\|\"\.\./\.\." "$node_dir/index.js"; then
  echo "FAIL: index.js refers to files outside client/node" >&2
  exit 1
fi
(cd "$node_dir" && node_modules/.bin/tsc -p test/tsconfig.json)
echo "ok: index.d.ts type-checks test/types.ts"

work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/node.XXXXXX")
(cd "$node_dir" && npm pack --silent --pack-destination "$work" >/dev/null)
tar -xzf "$work"/egress-client-*.tgz -C "$work"
for f in index.js fetch.js index.d.ts package.json README.md proto/egress/v1/egress.proto \
  proto/google/rpc/status.proto proto/google/rpc/error_details.proto; do
  [ -f "$work/package/$f" ] || { echo "FAIL: npm pack left out $f" >&2; exit 1; }
done
echo "ok: npm pack: $(ls "$work"/egress-client-*.tgz | xargs -n1 basename)"
# The unpacked package with its dependencies, and the tests beside it.
ln -s "$node_dir/node_modules" "$work/package/node_modules"
cp -r "$node_dir/test" "$work/package/test"
cd "$work/package"
# Under conformance_servers.py: the adapters' tests (test/adapters.test.js)
# walk tests/client/conformance.json and run the openai SDK against the
# egressd, httpbin and extras it starts; client.test.js starts its own.
exec /usr/bin/python3 "$TEST_SRCDIR/$TEST_WORKSPACE/tests/client/conformance_servers.py" -- \
  node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=junit --test-reporter-destination="${XML_OUTPUT_FILE:-/dev/null}" \
  test/
