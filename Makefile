# One command runs every test: `make test`. It builds the local control plane (kube-apiserver and
# etcd from the Go module proxy) on first use, starts it on 127.0.0.1 for the run, and stops it after.

CONTROL_PLANE_BIN = $$(tests/control-plane/build.sh)

.PHONY: test control-plane demo lint

## Every test: unit, doc, trybuild UI and integration tests against a real control plane.
test:
	@bin=$(CONTROL_PLANE_BIN) && "$$bin/launcher" run -- cargo test --workspace --locked

## Start a control plane and keep it running; export what it prints to run tests by hand.
control-plane:
	@bin=$(CONTROL_PLANE_BIN) && "$$bin/launcher" serve

## Three replicas of examples/periodic.rs on a local control plane: graceful and crash failover.
demo:
	@bin=$(CONTROL_PLANE_BIN) && cargo build --example periodic && \
		KUBECTL=$$(tests/control-plane/kubectl.sh) "$$bin/launcher" run -- examples/demo.sh

## Formatting, lints and docs, as CI checks them.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
