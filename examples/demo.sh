#!/usr/bin/env bash
# The client-go leader-election experiment with three terminals, done automatically.
#
# Run it with `make demo`: that builds and starts the local control plane and calls this script
# inside it. Three replicas of examples/periodic.rs contend for one Lease with the default timings
# (15 s lease, 10 s renew deadline, 2 s retry). The script stops the leader gracefully (SIGTERM:
# the lease is released and another replica takes over at once), then kills the next leader
# (SIGKILL: the others wait for the lease to expire), and prints the failover times and the Lease
# as `kubectl get lease` shows it.
set -euo pipefail

: "${LEADER_TEST_CONTROL_PLANE:?run this through 'make demo', which starts the control plane}"
: "${KUBECTL:?run this through 'make demo', which installs kubectl}"
export KUBECONFIG=$LEADER_TEST_CONTROL_PLANE/admin.kubeconfig
periodic=${PERIODIC:-target/debug/examples/periodic}
lease=my-leader-election-lock
logs=$(mktemp -d)
declare -A pids

cleanup() {
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$logs"
}
trap cleanup EXIT

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
now_ms() { date +%s%3N; }

start() {
	local id=$1
	"$periodic" --kubeconfig "$KUBECONFIG" --id "$id" \
		--lease-lock-name "$lease" --lease-lock-namespace default \
		> >(sed -u "s/^/[$id] /" | tee -a "$logs/$id.log") 2>&1 &
	pids[$id]=$!
}

# The replica that printed "<id>: leading" most recently, among the running ones.
leader_other_than() {
	local not=$1 id
	for id in "${!pids[@]}"; do
		[[ $id == "$not" ]] && continue
		if grep -q "$id: leading $lease" "$logs/$id.log" 2>/dev/null &&
			! tail -n 20 "$logs/$id.log" | grep -q "$id: stopped leading"; then
			echo "$id"
			return 0
		fi
	done
	return 1
}

wait_for_leader() {
	local not=${1:-} deadline=$(($(date +%s) + 60)) id
	until id=$(leader_other_than "$not"); do
		(($(date +%s) < deadline)) || {
			echo "no leader after 60 s" >&2
			exit 1
		}
		sleep 0.02
	done
	echo "$id"
}

show_lease() {
	say "kubectl get lease $lease"
	"$KUBECTL" get lease "$lease" -n default \
		-o custom-columns='NAME:.metadata.name,HOLDER:.spec.holderIdentity,TRANSITIONS:.spec.leaseTransitions,DURATION:.spec.leaseDurationSeconds,RENEWED:.spec.renewTime'
}

say "starting three replicas of examples/periodic.rs"
for i in 1 2 3; do start "instance-$i"; done
first=$(wait_for_leader)
sleep 5
show_lease

say "stopping the leader, $first, gracefully (SIGTERM): it releases the lease"
t0=$(now_ms)
kill -TERM "${pids[$first]}"
second=$(wait_for_leader "$first")
graceful=$(($(now_ms) - t0))
wait "${pids[$first]}" 2>/dev/null || true
unset "pids[$first]"
sleep 5
show_lease

say "killing the new leader, $second (SIGKILL): the others wait for the lease to expire"
t0=$(now_ms)
kill -KILL "${pids[$second]}"
wait "${pids[$second]}" 2>/dev/null || true
unset "pids[$second]"
third=$(wait_for_leader "$second")
crash=$(($(now_ms) - t0))
sleep 3
show_lease

say "failover times"
printf '  graceful (SIGTERM on %s, %s took over): %d ms\n' "$first" "$second" "$graceful"
printf '  crash    (SIGKILL on %s, %s took over): %d ms (lease duration 15 s, counted from the\n' "$second" "$third" "$crash"
printf '           leader'"'"'s last renew, which was up to one 2 s retry period before the kill)\n'

say "stopping $third"
kill -TERM "${pids[$third]}"
wait "${pids[$third]}" 2>/dev/null || true
unset "pids[$third]"
