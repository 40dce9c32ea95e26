#!/usr/bin/env bash
# Installs egressd and egressctl (optimized builds) on PATH:
# /usr/local/bin as root, else ~/.local/bin. Usage: scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bazel build -c opt //service:egressd //client:egressctl
if [ "$(id -u)" -eq 0 ]; then dest=/usr/local/bin; else dest="$HOME/.local/bin"; fi
mkdir -p "$dest"
install -m 0755 bazel-bin/service/egressd bazel-bin/client/egressctl "$dest/"
echo "installed egressd and egressctl in $dest"
case ":$PATH:" in *":$dest:"*) ;; *) echo "add $dest to your PATH" ;; esac
