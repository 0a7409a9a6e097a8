#!/usr/bin/env bash
# Builds etcd, kube-apiserver, the launcher, the client-go peer (the interop tests' Go
# candidate) and toxiproxy (the fault campaign's network faults) from the Go module proxy
# (versions pinned in go.mod) and prints the absolute path of the directory holding all five.
# Progress goes to
# stderr; stdout carries only the path, so callers can use "$(tests/control-plane/build.sh)".
#
# The result is cached under ${LEADER_CONTROL_PLANE_CACHE:-<repo>/target/control-plane}/<key>,
# where <key> hashes this script, go.mod, go.sum, the Go sources here and `go version`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
cache_root=${LEADER_CONTROL_PLANE_CACHE:-$repo_root/target/control-plane}

say() { echo "control-plane: $*" >&2; }
die() {
	say "error: $*"
	exit 1
}

export GOTOOLCHAIN=local CGO_ENABLED=0

command -v go >/dev/null || die "Go 1.26 or newer is required to build the test control plane (https://go.dev/dl/)"
go_version=$(go version)
[[ $go_version =~ go1\.([0-9]+)(\.[0-9]+)? ]] || die "cannot parse Go version: $go_version"
go_minor=${BASH_REMATCH[1]}
((go_minor >= 26)) || die "Go 1.26 or newer is required, found: $go_version"
if ((go_minor >= 27)); then
	# Kubernetes 1.37's OpenAPI output depends on the encoding/json v1 behaviour.
	export GOEXPERIMENT=nojsonv2
fi

cd "$here"
mapfile -t sources < <(find . -name '*.go' -type f | LC_ALL=C sort)
key=$(
	{
		for f in build.sh go.mod go.sum "${sources[@]}"; do
			printf '%s\n' "$f"
			cat "$f"
		done
		printf '%s\n' "$go_version"
	} | sha256sum | cut -c1-16
)
dest=$cache_root/$key
if [[ -e $dest/.complete ]]; then
	echo "$dest"
	exit 0
fi

kube_version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
say "building kube-apiserver $kube_version and etcd $etcd_version from the Go module proxy into $dest" \
	"(first build: about 15 minutes on 2 cores; cached afterwards)"

mkdir -p "$cache_root"
tmp=$(mktemp -d "$cache_root/.tmp-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

# build NAME PACKAGE [GO BUILD FLAGS...]
build() {
	local name=$1 package=$2 start=$SECONDS
	say "building $name ..."
	go build "${@:3}" -o "$tmp/$name" "$package" || die "building $name failed"
	say "built $name in $((SECONDS - start))s"
}
# One build at a time: each already uses every core.
build etcd go.etcd.io/etcd/server/v3
# Stamp the real version, as Kubernetes' own build does, so /version and kubectl report it.
version_pkg=k8s.io/component-base/version
minor=${kube_version#v1.}
minor=${minor%%.*}
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver -ldflags \
	"-X $version_pkg.gitVersion=$kube_version -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$minor"
build launcher ./launcher -buildvcs=false
# The client-go leader-election candidate the interop tests run next to the Rust one.
build peer ./peer -buildvcs=false
# The fault campaign's proxy between each candidate and kube-apiserver (tests/cluster/faults.rs).
build toxiproxy github.com/Shopify/toxiproxy/v2/cmd/server

touch "$tmp/.complete"
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
	# A concurrent build got there first; keep its result.
	[[ -e $dest/.complete ]] || die "cannot move $tmp to $dest"
fi
trap - EXIT
rm -rf "$tmp"

# Drop builds for other keys, and temporary dirs of builds that died long ago.
for old in "$cache_root"/*; do
	if [[ $old != "$dest" && -d $old && $(basename "$old") =~ ^[0-9a-f]{16}$ ]]; then
		say "removing old build $old"
		rm -rf "$old"
	fi
done
find "$cache_root" -maxdepth 1 -name '.tmp-*' -mmin +600 -exec rm -rf {} + 2>/dev/null || true

echo "$dest"
