#!/usr/bin/env bash
# Every test of the project: what `make test` (and so CI) runs. In order:
#   1. build what the tests need, once: the local control plane and the test node (from the Go
#      module proxy, cached), kubectl (PyPI, cached), every Rust test target, the node's images;
#   2. unit, doc, trybuild UI and integration tests against a real control plane;
#   3. the attribute tests again on one thread (they must not depend on each other);
#   4. the consumer crate outside the workspace, with the oldest and the newest Kubernetes version;
#   5. the one-minute soak (tests/cluster/soak.rs: 3 processes contending for 100 leases under
#      faults), on a control plane of its own, for the same reason as the node tests below; it
#      writes under target/soak/ (`make soak` runs it for 30 minutes and writes docs/soak.md);
#   6. the node tests (tests/cluster/node.rs) against a control plane with a real node, on their
#      own so that the node's processes do not share the 2 cores with the timing-sensitive tests.
#      Inside the node's network namespace there is no network: cargo runs offline there.
# Every cargo command names the whole workspace (`--workspace --all-features`), so that all steps
# share one feature set and one build: without it cargo resolves the features of the root package
# alone and builds the tree a second time. On CI (`CI` set) nothing is compiled incrementally: a
# build from nothing gains nothing from incremental caches, which took 2 GB.
# Every step runs even if an earlier one failed, and the script exits with the first failure's
# status; an interrupted step (status 128 + signal) stops everything.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export K8S_OPENAPI_ENABLED_VERSION=${K8S_OPENAPI_ENABLED_VERSION:-1.37}
if [[ -n ${CI:-} ]]; then
	export CARGO_INCREMENTAL=0
fi

bin=$(tests/control-plane/build.sh) || exit
node=$(tests/node/build.sh) || exit
KUBECTL=$(tests/control-plane/kubectl.sh) || exit
export KUBECTL
cargo test --workspace --all-features --locked --no-run || exit
images=$(python3 tests/node/images.py --out target/node/images pause="$node/pause" \
	peer="$bin/peer" periodic=target/debug/examples/periodic \
	writes=target/debug/examples/writes) || exit

status=0
step() {
	echo "test: $*" >&2
	"$@"
	local result=$?
	((result >= 128)) && exit "$result"
	if ((result != 0)); then
		echo "test: FAILED with status $result: $*" >&2
		((status == 0)) && status=$result
	fi
}

step "$bin/launcher" run -- cargo test --workspace --all-features --locked -- --skip node:: \
	--skip soak::soak
step cargo test --workspace --all-features --locked --test attributes -- --test-threads=1
step make --no-print-directory consumers
step "$bin/launcher" run -- cargo test --workspace --all-features --locked --test cluster -- --exact soak::soak
step env CARGO_NET_OFFLINE=true "$bin/launcher" run --node "$node" --images "$images" \
	-- cargo test --workspace --all-features --locked --test cluster node:: -- --test-threads=1
if ((status == 0)); then
	echo "test: all passed" >&2
fi
exit "$status"
