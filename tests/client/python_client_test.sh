#!/usr/bin/env bash
# Runs the Python client tests with Debian's interpreter, which sees
# python3-grpcio (the PATH's python3 may be another one). The runfiles hold the
# generated stubs (egress/v1/egress_pb2*.py) beside the package's sources.
set -euo pipefail
export PYTHONPATH="$PWD/client/python"
exec /usr/bin/python3 tests/client/python_client_test.py
