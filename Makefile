# One command runs every test: `make test`. It builds the local control plane (kube-apiserver and
# etcd from the Go module proxy) on first use, starts it on 127.0.0.1 for the run, and stops it after.

CONTROL_PLANE_BIN = $$(tests/control-plane/build.sh)

# The libraries enable no Kubernetes version of k8s-openapi (the application picks it); commands
# that build them without their dev-dependencies (`cargo doc`, `cargo build`) use the control
# plane's, as the dev-dependencies do.
export K8S_OPENAPI_ENABLED_VERSION ?= 1.37

.PHONY: test consumers control-plane demo fault-campaign lint

## Every test: unit, doc, trybuild UI and integration tests against a real control plane; the
## attribute tests once more on one thread (they must not depend on each other); the consumer crate.
test:
	@bin=$(CONTROL_PLANE_BIN) && "$$bin/launcher" run -- cargo test --workspace --all-features --locked
	cargo test --all-features --locked --test attributes -- --test-threads=1
	@$(MAKE) --no-print-directory consumers

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

## Formatting, lints and docs, as CI checks them.
lint:
	cargo fmt --all -- --check
	cargo fmt --manifest-path tests/consumers/operator/Cargo.toml -- --check
	cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

.PHONY: bench
BENCH_FLAGS ?=

## Ours against client-go on one local control plane (about 20 minutes on 2 cores): failover,
## API requests, scale, footprint. Writes docs/benchmarks.md and docs/benchmarks/failover.svg.
## BENCH_FLAGS=--quick is a smoke run of a few minutes that writes under target/bench/quick/.
bench:
	@bin=$(CONTROL_PLANE_BIN) && cargo build --release --examples --locked && \
		mkdir -p target/bench && \
		(cd benches/go-electors && GOTOOLCHAIN=local CGO_ENABLED=0 \
			go build -buildvcs=false -o ../../target/bench/go-electors .) && \
		"$$bin/launcher" run -- python3 benches/bench.py --bin-dir "$$bin" $(BENCH_FLAGS)
