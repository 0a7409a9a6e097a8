# One command runs every test: `make test`. It builds the local control plane (kube-apiserver and
# etcd from the Go module proxy) and the test node (kubelet, containerd, ...) on first use, starts
# the control plane for the tests and stops it after, then the same with a node for the node tests.

CONTROL_PLANE_BIN = $$(tests/control-plane/build.sh)
NODE_BIN = $$(tests/node/build.sh)
# The node's images, from binaries built here (needs $$bin and $$node set): the pause program,
# the client-go peer, and examples/periodic.rs and examples/writes.rs as
# `cargo test --all-features` builds them.
NODE_IMAGES = $$(python3 tests/node/images.py --out target/node/images pause="$$node/pause" \
	peer="$$bin/peer" periodic=target/debug/examples/periodic \
	writes=target/debug/examples/writes)

# The libraries enable no Kubernetes version of k8s-openapi (the application picks it); commands
# that build them without their dev-dependencies (`cargo doc`, `cargo build`) use the control
# plane's, as the dev-dependencies do.
export K8S_OPENAPI_ENABLED_VERSION ?= 1.37

.PHONY: test consumers control-plane node node-campaign demo fault-campaign soak writes node-writes lint

## Every test: unit, doc, trybuild UI and integration tests against a real control plane, the
## attribute tests once more on one thread, the consumer crate, the one-minute soak, then the node
## tests against a control plane with a real node. tests/test.sh says how, step by step.
test:
	@tests/test.sh

## tests/consumers/operator, a crate outside the workspace that uses `leader` as an application
## does, built and tested with the oldest and the newest Kubernetes version k8s-openapi offers.
## It picks the version itself, so the variable exported above must not reach it.
consumers:
	@for version in earliest latest; do \
		echo "consumers: tests/consumers/operator with k8s-openapi/$$version"; \
		env -u K8S_OPENAPI_ENABLED_VERSION CARGO_TARGET_DIR="$(CURDIR)/target/consumers" \
			cargo test --locked --manifest-path tests/consumers/operator/Cargo.toml \
			--features "k8s-openapi/$$version" || exit 1; \
	done

## Start a control plane and keep it running; export what it prints to run tests by hand.
control-plane:
	@bin=$(CONTROL_PLANE_BIN) && "$$bin/launcher" serve

## Start a control plane and a test node (as root) and keep them running until Ctrl+C; export
## what it prints, and run commands inside the node's network namespace as it says.
node:
	@bin=$(CONTROL_PLANE_BIN) && node=$(NODE_BIN) && \
		cargo build --features http,metrics,axum,leader-service --example periodic --example writes --locked && images=$(NODE_IMAGES) && \
		"$$bin/launcher" serve --node "$$node" --images "$$images"

## Rolling updates on the test node (as root): 20 `kubectl rollout restart`s of examples/deploy/
## and 20 of the client-go peer in the same pod template (a few minutes); writes docs/rollouts.md.
## LEADER_NODE_ROLLOUTS=N sets the rollouts per implementation; `make test` runs 1.
node-campaign:
	@bin=$(CONTROL_PLANE_BIN) && node=$(NODE_BIN) && \
		KUBECTL=$$(tests/control-plane/kubectl.sh) && export KUBECTL && \
		cargo test --workspace --all-features --locked --test cluster --no-run && images=$(NODE_IMAGES) && \
		LEADER_NODE_ROLLOUTS=$${LEADER_NODE_ROLLOUTS:-20} LEADER_NODE_REPORT=$(CURDIR)/docs/rollouts.md \
		CARGO_NET_OFFLINE=true "$$bin/launcher" run --node "$$node" --images "$$images" -- \
		cargo test --workspace --all-features --locked --test cluster node::rollouts -- --nocapture

## Three replicas of examples/periodic.rs on a local control plane: graceful and crash failover.
demo:
	@bin=$(CONTROL_PLANE_BIN) && cargo build --features http,metrics --example periodic && \
		KUBECTL=$$(tests/control-plane/kubectl.sh) "$$bin/launcher" run -- examples/demo.sh

## The fault campaign (tests/cluster/faults.rs): 25 trials per fault kind, 200 in all, in about
## 10 minutes; writes the results table to docs/fault-campaign.md. LEADER_FAULT_TRIALS=N sets the
## trials per kind; `make test` runs 1 per kind.
fault-campaign:
	@bin=$(CONTROL_PLANE_BIN) && cargo build --examples --locked && \
		LEADER_FAULT_TRIALS=$${LEADER_FAULT_TRIALS:-25} RUST_LOG=$${RUST_LOG:-error} \
		LEADER_FAULT_REPORT=$(CURDIR)/docs/fault-campaign.md \
		"$$bin/launcher" run -- cargo test --locked --test cluster -- faults:: --nocapture

## Writes to the leader (tests/cluster/writes.rs): three replicas of examples/writes.rs, a client
## writing to every replica at random, 20 handovers (SIGTERM and SIGKILL by turns); about a
## minute. `make test` runs the same test; this writes its results to docs/writes.md.
writes:
	@bin=$(CONTROL_PLANE_BIN) && LEADER_WRITES_RESULTS=$(CURDIR)/docs/writes.md \
		"$$bin/launcher" run -- cargo test --workspace --all-features --locked --test cluster writes::writes_go_to -- --nocapture

## The same on the test node (as root): three pods of examples/deploy/writes/writes.yaml, 20 handovers
## (the leader's pod deleted, its container killed through containerd, by turns); adds its results
## to docs/writes.md. LEADER_NODE_WRITES_HANDOVERS=N sets the handovers; `make test` runs 4.
node-writes:
	@bin=$(CONTROL_PLANE_BIN) && node=$(NODE_BIN) && \
		KUBECTL=$$(tests/control-plane/kubectl.sh) && export KUBECTL && \
		cargo test --workspace --all-features --locked --test cluster --no-run && images=$(NODE_IMAGES) && \
		LEADER_NODE_WRITES_HANDOVERS=$${LEADER_NODE_WRITES_HANDOVERS:-20} \
		LEADER_WRITES_RESULTS=$(CURDIR)/docs/writes.md \
		CARGO_NET_OFFLINE=true "$$bin/launcher" run --node "$$node" --images "$$images" -- \
		cargo test --workspace --all-features --locked --test cluster node::writes -- --nocapture

## The soak (tests/cluster/soak.rs): 3 processes of examples/election.rs contending for the same
## 100 leases, a forced handover every few seconds (toxiproxy cuts of a long-lived leader, SIGTERM
## and SIGKILL of the third process, restarted each time), in whole fault cycles for SOAK_MINUTES
## minutes (default 30). Fails on overlapping leaderships, on RSS, fds or tokio tasks of the
## long-lived processes not flat after warm-up, or on anything left unrecovered; writes
## docs/soak.md and docs/soak.svg. `make test` runs one minute and writes under target/soak/.
SOAK_MINUTES ?= 30
soak:
	@bin=$(CONTROL_PLANE_BIN) && cargo build --workspace --all-features --examples --locked && \
		LEADER_SOAK_MINUTES=$(SOAK_MINUTES) LEADER_SOAK_REPORT=$(CURDIR)/docs/soak.md \
		"$$bin/launcher" run -- cargo test --workspace --all-features --locked --test cluster \
		-- --exact soak::soak --nocapture

## Formatting, lints and docs, as CI checks them.
lint:
	cargo fmt --all -- --check
	cargo fmt --manifest-path tests/consumers/operator/Cargo.toml -- --check
	cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

.PHONY: bench
BENCH_FLAGS ?=

## Ours against client-go on one local control plane (about 35 minutes on 2 cores): failover,
## API requests, the cost curve (10 to 5,000 leases per process), neighbours, footprint. Writes
## docs/benchmarks.md and the plots under docs/benchmarks/. BENCH_FLAGS=--quick is a smoke run
## of a few minutes that writes under target/bench/quick/; --only FIGURE,... runs some figures.
bench:
	@bin=$(CONTROL_PLANE_BIN) && cargo build --release --examples --locked && \
		mkdir -p target/bench && \
		(cd benches/go-electors && GOTOOLCHAIN=local CGO_ENABLED=0 \
			go build -buildvcs=false -o ../../target/bench/go-electors .) && \
		"$$bin/launcher" run -- python3 benches/bench.py --bin-dir "$$bin" $(BENCH_FLAGS)
