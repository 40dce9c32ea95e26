#!/usr/bin/env bash
# Installs the Python package with pip, as a user would (pip install
# ./client/python), into a virtual environment over Debian's python3-grpcio
# and python3-protobuf, offline (--no-index: the dependencies are Debian's),
# then runs the client tests with it against a real egressd. Writes JUnit XML
# to $XML_OUTPUT_FILE so that CI counts each case.
set -euo pipefail
export EGRESSD="$PWD/service/egressd"
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/pyclient.XXXXXX")
cp -rL client/python "$work/package"
/usr/bin/python3 -m venv --system-site-packages --without-pip "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-build-isolation --no-index \
  --disable-pip-version-check "$work/package"
# Nothing from the source tree: the installed package only.
cd "$work"
"$work/venv/bin/python" -c 'import egress_client, sys; print("installed:", egress_client.__file__)'
exec "$work/venv/bin/python" "$TEST_SRCDIR/$TEST_WORKSPACE/tests/client/python_client_test.py"
