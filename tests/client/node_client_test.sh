#!/usr/bin/env bash
# Runs the Node client's tests (node:test) against a real egressd. The package's
# node_modules come from scripts/setup.sh (npm ci); nothing is fetched here.
set -euo pipefail
export EGRESSD="$PWD/service/egressd"
# The runfiles link to the sources; node_modules lives beside the real ones.
node_dir=$(dirname "$(readlink -f client/node/package.json)")
if [ ! -d "$node_dir/node_modules/@grpc/grpc-js" ]; then
  echo "client/node/node_modules is missing: run scripts/setup.sh" >&2
  exit 1
fi
cd "$node_dir"
exec node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=junit --test-reporter-destination="${XML_OUTPUT_FILE:-/dev/null}" \
  test/
