#!/usr/bin/env bash
# Runs dashboard_test.py with Debian's interpreter (python3-grpcio) and the
# committed Python stubs from the runfiles.
set -euo pipefail
export PYTHONPATH="$PWD/client/python"
exec /usr/bin/python3 tests/k8s/dashboard_test.py
