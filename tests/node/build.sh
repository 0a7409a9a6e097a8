#!/usr/bin/env bash
# Builds what the test node runs, next to the control plane of tests/control-plane/build.sh, and
# prints the absolute path of the directory holding it. Progress goes to stderr; stdout carries
# only the path, so callers can use "$(tests/node/build.sh)".
#
# From the Go module proxy, at the versions pinned in the go.mod files:
#   kubelet, kube-controller-manager, kube-scheduler  tests/control-plane/go.mod (the same pinned
#                                                     Kubernetes release as kube-apiserver)
#   containerd, ctr, containerd-shim-runc-v2          tests/node/go.mod
#   pause (the sandbox image's program)               tests/node/pause
# From Debian packages, installed with apt-get when missing (they are not cached here):
#   runc, containernetworking-plugins (/usr/lib/cni), iptables
#
# The result is cached under ${LEADER_NODE_CACHE:-<repo>/target/node}/<key>, where <key> hashes
# this script, both go.mod and go.sum files, the Go sources here and `go version`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
control_plane=$repo_root/tests/control-plane
cache_root=${LEADER_NODE_CACHE:-$repo_root/target/node}

say() { echo "node: $*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# The Debian packages the node uses at run time.
install_packages() {
	local missing=()
	command -v runc >/dev/null || missing+=(runc)
	[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
		missing+=(containernetworking-plugins)
	command -v iptables >/dev/null || missing+=(iptables)
	((${#missing[@]} == 0)) && return
	command -v apt-get >/dev/null ||
		die "missing ${missing[*]} and no apt-get: install them with your package manager"
	((EUID == 0)) || die "missing ${missing[*]}: run as root (the test node needs root anyway)"
	say "installing Debian packages: ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
		apt-get update -q >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
			die "apt-get install ${missing[*]} failed"
	fi
}
install_packages

export GOTOOLCHAIN=local CGO_ENABLED=0
command -v go >/dev/null || die "Go 1.26 or newer is required to build the test node (https://go.dev/dl/)"
go_version=$(go version)
[[ $go_version =~ go1\.([0-9]+)(\.[0-9]+)? ]] || die "cannot parse Go version: $go_version"
((BASH_REMATCH[1] >= 26)) || die "Go 1.26 or newer is required, found: $go_version"
if ((BASH_REMATCH[1] >= 27)); then
	export GOEXPERIMENT=nojsonv2 # as tests/control-plane/build.sh does
fi

cd "$here"
mapfile -t sources < <(find . -name '*.go' -type f | LC_ALL=C sort)
key=$(
	{
		for f in build.sh go.mod go.sum "${sources[@]}" "$control_plane/go.mod" "$control_plane/go.sum"; do
			printf '%s\n' "${f#"$repo_root"/}"
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

kube_version=$(cd "$control_plane" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
containerd_version=$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)
say "building kubelet, kube-controller-manager, kube-scheduler $kube_version and containerd" \
	"$containerd_version from the Go module proxy into $dest (first build: about 8 minutes on" \
	"2 cores after the control plane's, whose Go build cache it shares; cached afterwards)"

mkdir -p "$cache_root"
tmp=$(mktemp -d "$cache_root/.tmp-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

# build DIR NAME PACKAGE [GO BUILD FLAGS...], one at a time: each already uses every core.
build() {
	local dir=$1 name=$2 package=$3 start=$SECONDS
	say "building $name ..."
	(cd "$dir" && go build "${@:4}" -o "$tmp/$name" "$package") || die "building $name failed"
	say "built $name in $((SECONDS - start))s"
}
# The real version, as Kubernetes' own build stamps it: kubelet reports it to the API server.
version_pkg=k8s.io/component-base/version
minor=${kube_version#v1.}
minor=${minor%%.*}
kube_ldflags="-X $version_pkg.gitVersion=$kube_version -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$minor"
build "$control_plane" kubelet k8s.io/kubernetes/cmd/kubelet -ldflags "$kube_ldflags"
build "$control_plane" kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager -ldflags "$kube_ldflags"
build "$control_plane" kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler -ldflags "$kube_ldflags"
# containerd as its release build configures it, minus the storage drivers that need cgo.
containerd_pkg=github.com/containerd/containerd/v2
containerd_ldflags="-X $containerd_pkg/version.Version=$containerd_version -X $containerd_pkg/version.Package=$containerd_pkg"
tags="no_btrfs no_devmapper no_zfs urfave_cli_no_docs"
build "$here" containerd $containerd_pkg/cmd/containerd -tags "$tags" -ldflags "$containerd_ldflags"
build "$here" ctr $containerd_pkg/cmd/ctr -tags "$tags" -ldflags "$containerd_ldflags"
build "$here" containerd-shim-runc-v2 $containerd_pkg/cmd/containerd-shim-runc-v2 -tags "$tags no_grpc" \
	-ldflags "$containerd_ldflags"
build "$here" pause ./pause -buildvcs=false

touch "$tmp/.complete"
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
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
