#!/usr/bin/env bash
# The Python adapters (httpx, requests) with Debian's python3-httpx and
# python3-requests: the package installed with pip into a virtual environment
# over Debian's packages, offline, as python_client_test does; then
# conformance_servers.py starts egressd, httpbin under gunicorn and the extras
# and runs python_adapters_test.py. Writes JUnit XML to $XML_OUTPUT_FILE.
set -euo pipefail
export EGRESSD="$PWD/service/egressd"
tests="$TEST_SRCDIR/$TEST_WORKSPACE/tests/client"
for module in httpx requests; do
  /usr/bin/python3 -c "import $module" 2>/dev/null ||
    { echo "python3-$module is missing: run scripts/setup.sh --tests" >&2; exit 1; }
done
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/pyadapters.XXXXXX")
cp -rL client/python "$work/package"
/usr/bin/python3 -m venv --system-site-packages --without-pip "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-build-isolation --no-index \
  --disable-pip-version-check "$work/package"
cd "$work"
exec /usr/bin/python3 "$tests/conformance_servers.py" -- \
  "$work/venv/bin/python" "$tests/python_adapters_test.py"
