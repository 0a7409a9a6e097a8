#!/usr/bin/env python3
"""`make bench`: our runtime against client-go's leader election, side by side on one control plane.

Run by `make bench` as `launcher run -- python3 benches/bench.py --bin-dir DIR`: the launcher has
started kube-apiserver and etcd on 127.0.0.1 and set LEADER_TEST_CONTROL_PLANE to its state
directory. This script starts the candidates, measures, and writes docs/benchmarks.md and the
plots docs/benchmarks/*.svg. Python 3 standard library only.

Candidates (all with the production timings 15 s / 10 s / 2 s):
- ours: target/release/examples/election (failover, scale) and target/release/examples/periodic
  (request rates, idle footprint);
- client-go: the interop peer tests/control-plane/peer (failover, request rates, idle footprint)
  and benches/go-electors (scale: many electors per process).

Figures (see the Method section this script writes into docs/benchmarks.md):
1. graceful failover: SIGTERM to the leader -> another candidate prints `leading`;
2. SIGKILL failover, from the kill and from the lease's last renewTime;
3. API requests per candidate per minute (leader, follower), counted by kube-apiserver;
4. scale, the cost curve: 10, 100, 1,000 and 5,000 leases per process, 3 processes (the
   1,000 point is the scale figure); each implementation stops at the first size that does not
   fit, and the report says what stopped it;
5. idle footprint of the periodic example against the peer: RSS, CPU seconds per hour;
6. neighbours: a 10-lease process in a quiet namespace and in one where a neighbour renews
   1,000 leases of its own, ours and client-go at the same time.

`--quick` runs every figure with tiny trial counts, sizes and windows, for debugging the script;
it writes under target/bench/quick/. `--only` runs some figures and writes no report.
"""

import argparse
import atexit
import datetime
import html
import http.client
import json
import math
import os
import platform
import random
import re
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "target" / "bench"
LOGS = WORK / "logs"

LEASE_DURATION = 15.0
RETRY_PERIOD_S = 2.0
TIMINGS = ["--lease-duration", "15s", "--renew-deadline", "10s", "--retry-period", "2s"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

OURS, GO = "ours", "client-go"


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def monotonic():
    """CLOCK_MONOTONIC, the clock the candidates stamp their lines with under --timestamps."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def realtime_offset():
    """CLOCK_REALTIME - CLOCK_MONOTONIC, from the tightest of a few paired readings."""
    best = None
    for _ in range(5):
        a = time.clock_gettime(time.CLOCK_MONOTONIC)
        r = time.clock_gettime(time.CLOCK_REALTIME)
        b = time.clock_gettime(time.CLOCK_MONOTONIC)
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) / 2)
    return best[1]


def parse_micro_time(text):
    """A MicroTime such as 2026-11-25T12:00:00.123456Z, as seconds since the epoch."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------------------------------------
# The API server, as the admin user.


class Api:
    def __init__(self, info):
        url = info["server"]
        match = re.match(r"https://([^:/]+):(\d+)", url)
        self.host, self.port = match.group(1), int(match.group(2))
        assert self.host in ("127.0.0.1", "localhost"), url
        self.context = ssl.create_default_context(cafile=info["ca_file"])
        self.token = info["admin_token"]
        self.local = threading.local()

    def request(self, method, path, body=None, ok=(200, 201)):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(3):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPSConnection(
                    self.host, self.port, context=self.context, timeout=30
                )
                self.local.conn = conn
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2)
                continue
            if response.status not in ok:
                raise RuntimeError(f"{method} {path}: {response.status} {payload[:300]!r}")
            return response.status, payload
        raise AssertionError("unreachable")

    def create_namespace(self, prefix):
        name = f"{prefix}-{int(time.time() * 1000) % 10**8}"
        self.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        return name

    def lease(self, namespace, name):
        status, payload = self.request(
            "GET",
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
            ok=(200, 404),
        )
        return json.loads(payload) if status == 200 else None

    def leases(self, namespace):
        _, payload = self.request(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        )
        return json.loads(payload)["items"]

    def lease_requests(self):
        """Lease requests kube-apiserver has counted so far: {"VERB CODE": count}, open watches.

        apiserver_request_total counts a request when it completes, so a watch is counted when
        it ends; apiserver_longrunning_requests is the number of lease watches open now.
        """
        _, payload = self.request("GET", "/metrics", ok=(200,))
        counts, open_watches = {}, 0
        for line in payload.decode().splitlines():
            if line.startswith("apiserver_request_total{"):
                labels, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
                labels = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                if labels.get("resource") == "leases" and labels.get("subresource") == "":
                    key = f'{labels["verb"]} {labels.get("code", "")}'
                    counts[key] = counts.get(key, 0) + float(value)
            elif line.startswith("apiserver_longrunning_requests{"):
                labels, value = line[len("apiserver_longrunning_requests{") :].rsplit("} ", 1)
                labels = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                if labels.get("resource") == "leases" and labels.get("verb") == "WATCH":
                    open_watches += float(value)
        return counts, open_watches


def request_delta(before, after):
    """Requests made between two lease_requests() readings, {verb: n} with watches counted when
    they start, and {"VERB CODE": n} as counted (watches when they end)."""
    (c0, w0), (c1, w1) = before, after
    by_code = {}
    for key in set(c0) | set(c1):
        n = c1.get(key, 0) - c0.get(key, 0)
        if n:
            by_code[key] = n
    delta = {}
    for key, n in by_code.items():
        verb = key.split(" ")[0]
        delta[verb] = delta.get(verb, 0) + n
    # watches started = completed + (open at the end - open at the start)
    watches = delta.get("WATCH", 0) + w1 - w0
    delta.pop("WATCH", None)
    if watches:
        delta["WATCH"] = watches
    return delta, by_code


# ---------------------------------------------------------------------------------------------
# Processes.

LEADING = re.compile(r"^(\S+): leading (\S+)")
STOPPED = re.compile(r"^(\S+): stopped leading (\S+)")
NEW_LEADER = re.compile(r"^(\S+): new leader of (\S+): (\S+)")
STAMP = re.compile(r"^\[(\d+)\.(\d{9})\] (.*)$")

ALL_PROCESSES = []


def cleanup():
    for process in ALL_PROCESSES:
        if process.poll() is None:
            try:
                process.kill()
            except OSError:
                pass


atexit.register(cleanup)


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


class Fleet:
    """Candidates of one implementation on one namespace; every line they print, in order."""

    def __init__(self, name, namespace, command):
        self.name = name
        self.namespace = namespace
        self.command = command  # command(id) -> argv
        self.members = {}  # id -> Popen
        self.events = []  # (time, id, text)
        self.leader = None
        self.cond = threading.Condition()
        self.started = 0

    def start(self, id=None):
        self.started += 1
        id = id or f"{self.name}-{self.started}"
        LOGS.mkdir(parents=True, exist_ok=True)
        stderr = open(LOGS / f"{self.namespace}-{id}.log", "wb")
        process = subprocess.Popen(
            self.command(id),
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
        stderr.close()
        ALL_PROCESSES.append(process)
        with self.cond:
            self.members[id] = process
        threading.Thread(target=self._read, args=(id, process), daemon=True).start()
        return id

    def _read(self, id, process):
        for raw in process.stdout:
            arrived = monotonic()
            text = raw.decode(errors="replace").rstrip("\n")
            stamped = STAMP.match(text)
            at = arrived
            if stamped:
                at = int(stamped.group(1)) + int(stamped.group(2)) / 1e9
                text = stamped.group(3)
            with self.cond:
                self.events.append((at, id, text))
                if m := LEADING.match(text):
                    self.leader = m.group(1)
                elif (m := STOPPED.match(text)) and self.leader == m.group(1):
                    self.leader = None
                self.cond.notify_all()
        with self.cond:
            if self.leader == id:
                self.leader = None
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.events)

    def wait_for(self, predicate, since=0, timeout=60.0):
        """The first event from index `since` on for which predicate(at, id, text) holds."""
        deadline = monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events[since:]:
                    if predicate(*event):
                        return event
                since = len(self.events)
                left = deadline - monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name} in {self.namespace}: timed out")
                self.cond.wait(left)

    def current_leader(self, timeout=60.0):
        deadline = monotonic() + timeout
        with self.cond:
            while self.leader is None or self.members[self.leader].poll() is not None:
                left = deadline - monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name} in {self.namespace}: no leader")
                self.cond.wait(min(left, 0.5))
            return self.leader

    def wait_following(self, id, since, timeout=60.0):
        """Until `id` prints that it sees a leader (or that it leads)."""
        self.wait_for(
            lambda _at, who, text: who == id
            and (NEW_LEADER.match(text) is not None or LEADING.match(text) is not None),
            since,
            timeout,
        )

    def stop(self, id, sig=signal.SIGTERM, timeout=30.0):
        process = self.members.pop(id)
        if process.poll() is None:
            process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self, timeout=30.0):
        """SIGTERM to every member at once; SIGKILL to those still running `timeout` s later."""
        ids = list(self.members)
        for id in ids:
            if self.members[id].poll() is None:
                self.members[id].send_signal(signal.SIGTERM)
        deadline = monotonic() + timeout
        for id in ids:
            self.stop(id, timeout=max(0.0, deadline - monotonic()))

    def pids(self):
        return {id: p.pid for id, p in self.members.items()}


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds (dead threads included), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_task_cpu_ns(pid):
    """Run time of each live thread in nanoseconds, from /proc/PID/task/TID/schedstat: finer
    than the 10 ms ticks of /proc/PID/stat, but blind to threads that exit in between."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------
# Statistics.


def percentile(values, p):
    """Linear interpolation between order statistics (numpy's default)."""
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def median(values):
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------
# Commands.


class Commands:
    def __init__(self, bin_dir, kubeconfig, need_binaries=True):
        """`need_binaries`: exit unless the programs are built (a re-render of a run that
        recorded its versions runs none of them)."""
        self.bin_dir = Path(bin_dir)
        self.kubeconfig = kubeconfig
        examples = REPO / "target" / "release" / "examples"
        self.election = examples / "election"
        self.periodic = examples / "periodic"
        self.peer = self.bin_dir / "peer"
        self.go_electors = WORK / "go-electors"
        for path in (self.election, self.periodic, self.peer, self.go_electors):
            if need_binaries and not os.access(path, os.X_OK):
                sys.exit(f"bench: {path} is missing; run `make bench`, which builds it")

    def common(self, id, namespace, lease):
        return [
            "--kubeconfig", self.kubeconfig, "--id", id,
            "--lease-lock-name", lease, "--lease-lock-namespace", namespace, *TIMINGS,
        ]  # fmt: skip

    def fleet(self, impl, program, namespace, lease):
        binary = {
            (OURS, "election"): self.election,
            (OURS, "periodic"): self.periodic,
            (GO, "peer"): self.peer,
        }[(impl, program)]
        stamps = ["--timestamps"] if program in ("election", "peer") else []
        short = "rust" if impl == OURS else "go"
        return Fleet(
            short,
            namespace,
            lambda id: [str(binary), *self.common(id, namespace, lease), *stamps],
        )

    def scale_fleet(self, impl, namespace, count, prefix="scale", name=None):
        """Processes that each campaign for the Leases PREFIX-0 ... PREFIX-(count-1): ours, one
        runtime with one election per name; client-go, go-electors' one elector per name."""
        names = [f"{prefix}-{i}" for i in range(count)]
        name = name or ("rust" if impl == OURS else "go")
        if impl == OURS:
            command = lambda id: [  # noqa: E731
                str(self.election), *self.common(id, namespace, ",".join(names)), "--timestamps",
            ]  # fmt: skip
            return Fleet(name, namespace, command), names
        command = lambda id: [  # noqa: E731
            str(self.go_electors), *self.common(id, namespace, prefix), "--count", str(count),
        ]  # fmt: skip
        return Fleet(name, namespace, command), names


# ---------------------------------------------------------------------------------------------
# Figure 1 and 2: failover.


def start_fleet(fleet, size):
    mark = fleet.mark()
    ids = [fleet.start() for _ in range(size)]
    fleet.current_leader()
    for id in ids:
        fleet.wait_following(id, mark)


def failover_trial(api, fleet, lease, sig, pause):
    """Stops the leader with `sig`; returns (from the signal, from the last renew) in seconds."""
    time.sleep(random.uniform(0, pause))
    leader = fleet.current_leader()
    offset = realtime_offset()
    mark = fleet.mark()
    process = fleet.members[leader]
    sent = monotonic()
    process.send_signal(sig)
    last_renew = None
    if sig == signal.SIGKILL:
        # The last renew is in the record the killed leader left behind: read it before anyone
        # can take over (that takes a lease duration).
        process.wait(10)
        record = (api.lease(fleet.namespace, lease) or {}).get("spec", {})
        if record.get("holderIdentity") == leader and record.get("renewTime"):
            last_renew = parse_micro_time(record["renewTime"]) - offset
        else:
            log(f"  {fleet.name}: the lease does not name the killed leader {leader}: {record}")
    at, winner, _ = fleet.wait_for(
        lambda at, who, text: who != leader and at >= sent and LEADING.match(text) is not None,
        mark,
        timeout=90,
    )
    from_renew = None if last_renew is None else at - last_renew
    fleet.stop(leader, timeout=30)
    # A replacement with a new identity (the old one would hold the lease at once).
    mark = fleet.mark()
    fresh = fleet.start()
    fleet.wait_following(fresh, mark)
    return at - sent, from_renew, winner


def graceful_failover(api, commands, trials):
    log(f"figure 1: graceful failover, {trials} trials each, alternating ours and client-go")
    fleets = {
        OURS: commands.fleet(OURS, "election", api.create_namespace("bench-graceful-rust"), "lock"),
        GO: commands.fleet(GO, "peer", api.create_namespace("bench-graceful-go"), "lock"),
    }
    for fleet in fleets.values():
        start_fleet(fleet, 3)
    results = {OURS: [], GO: []}
    for trial in range(trials):
        for impl, fleet in fleets.items():
            seconds, _, _ = failover_trial(api, fleet, "lock", signal.SIGTERM, pause=1.0)
            results[impl].append(seconds)
        log(
            f"  graceful {trial + 1}/{trials}: ours {results[OURS][-1] * 1000:.1f} ms, "
            f"client-go {results[GO][-1] * 1000:.1f} ms"
        )
    for fleet in fleets.values():
        fleet.stop_all()
    return results


def kill_failover(api, commands, trials):
    log(f"figure 2: SIGKILL failover, {trials} trials each, ours and client-go in parallel")
    fleets = {
        OURS: commands.fleet(OURS, "election", api.create_namespace("bench-kill-rust"), "lock"),
        GO: commands.fleet(GO, "peer", api.create_namespace("bench-kill-go"), "lock"),
    }
    results = {OURS: [], GO: []}
    errors = []

    def run(impl, fleet):
        try:
            start_fleet(fleet, 3)
            for trial in range(trials):
                from_kill, from_renew, _ = failover_trial(
                    api, fleet, "lock", signal.SIGKILL, pause=2.0
                )
                results[impl].append((from_kill, from_renew))
                renew_text = "?" if from_renew is None else f"{from_renew:.3f} s"
                log(
                    f"  kill {impl} {trial + 1}/{trials}: {from_kill:.3f} s from the kill, "
                    f"{renew_text} from the last renew"
                )
            fleet.stop_all()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"{impl}: {error!r}")

    threads = [threading.Thread(target=run, args=item) for item in fleets.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return results


# ---------------------------------------------------------------------------------------------
# Figures 3 and 5: request rates and idle footprint, one implementation at a time.


def sample_processes(pids):
    return {
        id: (proc_cpu_seconds(pid), proc_rss_kib(pid), proc_task_cpu_ns(pid))
        for id, pid in pids.items()
    }


def task_delta_seconds(before, after):
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def measure_windows(api, pids, windows, seconds):
    """`windows` consecutive windows of `seconds`: lease requests, CPU and RSS of `pids`."""
    out = []
    before, procs, t0 = api.lease_requests(), sample_processes(pids), monotonic()
    for _ in range(windows):
        time.sleep(seconds)
        after, procs_after, t1 = api.lease_requests(), sample_processes(pids), monotonic()
        requests, by_code = request_delta(before, after)
        out.append(
            {
                "seconds": t1 - t0,
                "requests": requests,
                "by_code": by_code,
                "cpu": {id: procs_after[id][0] - procs[id][0] for id in pids},
                "cpu_fine": {
                    id: task_delta_seconds(procs[id][2], procs_after[id][2]) for id in pids
                },
                "rss_kib": {id: procs_after[id][1] for id in pids},
            }
        )
        before, procs, t0 = after, procs_after, t1
    return out


def measure_baseline(api, windows, seconds):
    """Lease requests per minute of the API server on its own (kube-apiserver renews its own
    identity Lease in kube-system every 10 s), to subtract from every window."""
    measured = measure_windows(api, {}, windows, seconds)
    total = sum(w["seconds"] for w in measured)
    verbs = {}
    for w in measured:
        for verb, n in w["requests"].items():
            verbs[verb] = verbs.get(verb, 0) + n * 60 / total
    return {"per_min": verbs, "seconds": total}


def steady_state(api, commands, windows, seconds, warmup, baseline_windows):
    log(
        f"figures 3 and 5: steady state, {windows} windows of {seconds:.0f} s per fleet "
        f"(1 candidate, then 3), ours then client-go, after {baseline_windows} windows of the API "
        "server alone"
    )
    baseline = measure_baseline(api, baseline_windows, seconds)
    log(f"  baseline: {baseline}")
    results = {"baseline": baseline}
    for impl, program in ((OURS, "periodic"), (GO, "peer")):
        namespace = api.create_namespace(f"bench-steady-{'rust' if impl == OURS else 'go'}")
        fleet = commands.fleet(impl, program, namespace, "lock")
        start_fleet(fleet, 1)
        leader = fleet.current_leader()
        time.sleep(warmup)
        alone = measure_windows(api, fleet.pids(), windows, seconds)
        mark = fleet.mark()
        followers = [fleet.start(), fleet.start()]
        for id in followers:
            fleet.wait_following(id, mark)
        time.sleep(warmup)
        assert fleet.current_leader() == leader, "the leader changed during the steady state"
        three = measure_windows(api, fleet.pids(), windows, seconds)
        fleet.stop_all()
        results[impl] = {
            "leader": leader,
            "followers": followers,
            "alone": alone,
            "three": three,
            "baseline": baseline,
        }
        log(f"  {impl}: {summarize_steady(results[impl], impl)}")
    return results


# kube's watcher asks for timeoutSeconds=290 (kube-core's default): each of our processes opens
# one lease watch per 290 s in steady state. Windows shorter than that catch a reopening only by
# chance, so ours are charged this rate instead of the WATCH requests seen in the windows.
WATCH_TIMEOUT_S = 290
OURS_WATCH_PER_MIN = 60 / WATCH_TIMEOUT_S


def per_minute(window, verbs=None):
    """Lease requests per minute in a window; without WATCH when `verbs` says so."""
    return (
        sum(n for v, n in window["requests"].items() if verbs is None or v in verbs)
        * 60
        / window["seconds"]
    )


def non_watch(window):
    return per_minute(window, {v for v in window["requests"] if v != "WATCH"})


def summarize_steady(result, impl):
    """Requests per minute of the leader and of one follower, and footprints."""
    # Every verb but WATCH, less the API server's own rate; then each side's watch charge: ours
    # keep one watch per process, the peer opens none (the API server's own watches, reopened
    # at random, would otherwise add noise to one side or the other).
    base_rate = sum(n for v, n in result["baseline"]["per_min"].items() if v != "WATCH")
    watch = OURS_WATCH_PER_MIN if impl == OURS else 0.0

    def rate(window):
        return non_watch(window) - base_rate
    leader_rate = median([rate(w) for w in result["alone"]])
    # noise can make the difference slightly negative when followers make no requests
    follower_rate = max(0.0, median([(rate(w) - leader_rate) / 2 for w in result["three"]]))
    verbs_alone = median_verbs(result["alone"])
    verbs_three = median_verbs(result["three"])
    leader, followers = result["leader"], result["followers"]
    windows = result["alone"] + result["three"]
    summary = {
        "leader_per_min": leader_rate + watch,
        "follower_per_min": follower_rate + watch,
        "fleet3_per_candidate_per_min": median([rate(w) / 3 for w in result["three"]]) + watch,
        "watch_per_min": watch,
        "verbs_alone": verbs_alone,
        "verbs_three": verbs_three,
        # footprint: the leader over every window, followers over the 3-candidate windows
        "leader_cpu_s_per_hour": sum(w["cpu_fine"][leader] for w in windows)
        * 3600
        / sum(w["seconds"] for w in windows),
        "leader_cpu_window_s": sum(w["seconds"] for w in windows),
        "follower_cpu_s_per_hour": median(
            [
                sum(w["cpu_fine"][f] for w in result["three"])
                * 3600
                / sum(w["seconds"] for w in result["three"])
                for f in followers
            ]
        ),
        "follower_cpu_window_s": sum(w["seconds"] for w in result["three"]),
        "leader_cpu_ticks_s": sum(w["cpu"][leader] for w in windows),
        "follower_cpu_ticks_s": median(
            [sum(w["cpu"][f] for w in result["three"]) for f in followers]
        ),
        "leader_rss_kib": max(w["rss_kib"][leader] for w in windows),
        "follower_rss_kib": median([max(w["rss_kib"][f] for w in result["three"]) for f in followers]),
    }
    return summary


def median_verbs(windows):
    verbs = sorted({v for w in windows for v in w["requests"]})
    return {
        v: median([w["requests"].get(v, 0) * 60 / w["seconds"] for w in windows]) for v in verbs
    }


# ---------------------------------------------------------------------------------------------
# Figures 4 and 6: many leases per process (the cost curve) and neighbours. Both start fleets of
# `Commands.scale_fleet`, wait with `wait_led` and measure with `measure_windows`.


def control_plane_pids():
    info = json.loads(
        (Path(os.environ["LEADER_TEST_CONTROL_PLANE"]) / "control-plane.json").read_text()
    )
    return {"kube-apiserver": info["kube_apiserver_pid"], "etcd": info["etcd_pid"]}


def wait_led(api, fleet, names, started, timeout):
    """Until every Lease of `names` has a holder, or `timeout` seconds after `started`.

    Returns (seconds from `started` until every Lease had one, or None; how many had one at the
    end; the LIST polls as (seconds, held)). The candidates' `leading` lines say when the last
    Lease was taken (cheap to follow, and stamped); LISTs then check that each one names a
    holder, at most every 0.25 s, less often for many Leases (a LIST of 5,000 Leases is work
    for the API server and for this script)."""
    wanted = set(names)
    deadline = started + timeout
    led, last, since = set(), None, 0
    with fleet.cond:
        while True:
            for at, _, text in fleet.events[since:]:
                m = LEADING.match(text)
                if m and m.group(2) in wanted and m.group(2) not in led:
                    led.add(m.group(2))
                    last = at
            since = len(fleet.events)
            left = deadline - monotonic()
            alive = any(p.poll() is None for p in fleet.members.values())
            if len(led) == len(wanted) or left <= 0 or not alive:
                break
            fleet.cond.wait(min(left, 1.0))
    interval = max(0.25, len(wanted) / 4000)
    history = []
    while True:
        held = sum(
            1
            for item in api.leases(fleet.namespace)
            if item["metadata"]["name"] in wanted and item.get("spec", {}).get("holderIdentity")
        )
        now = monotonic()
        history.append((now - started, held))
        if held == len(wanted):
            # the last `leading` line, unless a LIST after it still found a Lease without holder
            at = last if len(history) == 1 and last is not None else now
            return at - started, held, history
        alive = any(p.poll() is None for p in fleet.members.values())
        if now + interval > deadline or not alive:
            return None, held, history
        time.sleep(interval)


# A leader renews once per retry period when its requests return at once; below half of that
# they take seconds, and the renew deadline is near.
MIN_RENEWS_PER_RETRY_PERIOD = 0.5


def cpu_percent(windows, id):
    """CPU of `id` over all the windows, in % of one core: utime + stime from /proc/PID/stat,
    whose totals the kernel keeps exact (to the 10 ms tick) and which count exited threads."""
    return sum(w["cpu"][id] for w in windows) * 100 / sum(w["seconds"] for w in windows)


def scale_point(api, commands, impl, count, replicas, windows, seconds, warmup, converge_timeout,
                baseline):  # fmt: skip
    """`replicas` processes of `impl` campaigning for the same `count` Leases: time until every
    Lease has a leader, then `windows` windows of the processes, kube-apiserver and etcd.

    The point fits when every Lease had a leader within `converge_timeout`, no process exited,
    under 1 % of the Leases changed leader during the windows and the leaders renewed at least
    every other retry period; otherwise `stopped_by` says why. Never raises for a failed
    measurement: the cost curve goes on without this size."""
    short = "rust" if impl == OURS else "go"
    result = {"count": count, "replicas": replicas, "fits": False, "stopped_by": None}
    reasons = []
    fleet = None
    try:
        namespace = api.create_namespace(f"bench-scale-{short}-{count}")
        fleet, names = commands.scale_fleet(impl, namespace, count)
        started = monotonic()
        for _ in range(replicas):
            fleet.start()
        converged, led, history = wait_led(api, fleet, names, started, converge_timeout)
        result.update(converged_s=converged, led_at_end_of_wait=led, history=history[-5:])
        log(
            f"  {impl}, {count:,} leases: {led:,}/{count:,} led after {monotonic() - started:.1f} s"
            + ("" if converged is not None else " (did not converge)")
        )
        if converged is None:
            reasons.append(
                f"only {led:,} of the {count:,} leases had a leader {converge_timeout:.0f} s "
                "after the start"
            )
        time.sleep(warmup)
        mark = fleet.mark()
        pids = fleet.pids()
        measured = measure_windows(api, {**pids, **control_plane_pids()}, windows, seconds)
        # leadership changes during the windows: `leading` lines printed then
        changes = sum(1 for _, _, text in fleet.events[mark:] if LEADING.match(text))
        holders = {}
        for item in api.leases(namespace):
            holder = item.get("spec", {}).get("holderIdentity")
            if holder and item["metadata"]["name"].startswith("scale-"):
                holders[holder] = holders.get(holder, 0) + 1
        window_s = sum(w["seconds"] for w in measured)
        base = (
            sum(n for v, n in baseline["per_min"].items() if v != "WATCH") / 60 if baseline else 0.0
        )
        verbs = {}
        for w in measured:
            for verb, n in w["requests"].items():
                verbs[verb] = verbs.get(verb, 0) + n / window_s
        throttled = sum(
            n for w in measured for key, n in w["by_code"].items() if key.endswith(" 429")
        )
        rss = {id: max(w["rss_kib"][id] for w in measured) / 1024 for id in pids}
        result.update(
            requests_per_s=sum(verbs.values()) - base,
            verbs_per_s=verbs,
            throttled=throttled,
            rss_mib=rss,
            rss_mean_mib=statistics.mean(rss.values()),
            cpu_percent={id: cpu_percent(measured, id) for id in pids},
            apiserver_cpu_percent=cpu_percent(measured, "kube-apiserver"),
            etcd_cpu_percent=cpu_percent(measured, "etcd"),
            leadership_changes=changes,
            holders=holders,
            window_s=window_s,
            windows=[
                {k: v for k, v in w.items() if k in ("seconds", "requests", "by_code")}
                for w in measured
            ],
        )
        refused = f" ({throttled:,.0f} requests refused with 429)" if throttled else ""
        if changes > 0.01 * count:
            reasons.append(
                f"{changes:,} leases changed leader during the {window_s:.0f} s of measurement: "
                f"renewals did not get through within the renew deadline{refused}"
            )
        renews = verbs.get("PUT", 0.0) * RETRY_PERIOD_S / count
        result["renews_per_retry_period"] = renews
        if renews < MIN_RENEWS_PER_RETRY_PERIOD:
            reasons.append(
                f"the API server did not keep up: each lease was renewed {renews:.2f} times per "
                f"retry period (once when it keeps up){refused}"
            )
    except (OSError, RuntimeError, TimeoutError, http.client.HTTPException) as error:
        reasons.append(f"the measurement failed: {error}")
    finally:
        exited = {id: p.poll() for id, p in (fleet.members if fleet else {}).items()}
        exited = {id: code for id, code in exited.items() if code is not None}
        if exited:
            codes = ", ".join(f"{id} with code {code}" for id, code in sorted(exited.items()))
            reasons.insert(0, f"processes exited: {codes} (see {LOGS})")
        if fleet:
            fleet.stop_all(timeout=60)
    result["fits"] = not reasons
    result["stopped_by"] = "; ".join(reasons) or None
    summary = {k: v for k, v in result.items() if k not in ("windows", "history")}
    log(f"  {impl}, {count:,} leases: {json.dumps(summary)}")
    return result


def scale(api, commands, sizes, replicas, windows, seconds, warmup, converge_timeout, baseline):
    """The cost curve: `scale_point` at each size, ours then client-go; an implementation stops
    at its first size that does not fit. {"sizes": [...], impl: [point per size]}."""
    log(
        f"figure 4: cost curve, {', '.join(f'{n:,}' for n in sizes)} leases per process x "
        f"{replicas} processes, ours then client-go at each size"
    )
    results = {"sizes": sizes, OURS: [], GO: []}
    too_big = {OURS: None, GO: None}
    for count in sizes:
        # Starts are short at small sizes and one start is noisy: extra starts, ours and
        # client-go in turn, before the measured one; the figure is the median of all of them.
        extra = {OURS: [], GO: []}
        for _ in range(convergence_trials(count) - 1):
            for impl in (OURS, GO):
                if too_big[impl] is not None:
                    continue
                try:
                    extra[impl].append(
                        convergence_trial(api, commands, impl, count, replicas, converge_timeout)
                    )
                except (OSError, RuntimeError, TimeoutError, http.client.HTTPException) as error:
                    log(f"  {impl}, {count:,} leases: a start could not be measured: {error}")
        for impl in (OURS, GO):
            if too_big[impl] is not None:
                results[impl].append(
                    {"count": count, "skipped": f"not tried: {too_big[impl]:,} did not fit"}
                )
                continue
            point = scale_point(
                api, commands, impl, count, replicas, windows, seconds, warmup,
                converge_timeout, baseline,
            )  # fmt: skip
            if "converged_s" in point:
                trials = extra[impl] + [point["converged_s"]]
                point["converged_trials_s"] = trials
                point["converged_s"] = (
                    None if None in trials else statistics.median(trials)
                )
            results[impl].append(point)
            if not point["fits"]:
                too_big[impl] = count
                log(f"  {impl}: {count:,} leases per process did not fit: {point['stopped_by']}")
    return results


# Starts of 3 processes from which the time until every lease has a leader is the median, at
# sizes up to CONVERGENCE_TRIALS_UP_TO leases per process (one start above: they take seconds).
CONVERGENCE_TRIALS = 7
CONVERGENCE_TRIALS_UP_TO = 100


def convergence_trials(count):
    return CONVERGENCE_TRIALS if count <= CONVERGENCE_TRIALS_UP_TO else 1


def convergence_trial(api, commands, impl, count, replicas, converge_timeout):
    """One start of `replicas` processes of `impl` for `count` fresh Leases: seconds until every
    Lease had a leader (None if not within `converge_timeout`); the processes are stopped after."""
    short = "rust" if impl == OURS else "go"
    namespace = api.create_namespace(f"bench-start-{short}-{count}")
    fleet, names = commands.scale_fleet(impl, namespace, count)
    try:
        started = monotonic()
        for _ in range(replicas):
            fleet.start()
        converged, _, _ = wait_led(api, fleet, names, started, converge_timeout)
    finally:
        fleet.stop_all(timeout=60)
    log(f"  {impl}, {count:,} leases: a start, every lease led after {converged} s")
    return converged


def curve_point(curve, impl, count):
    """The measured point of `impl` at `count` leases per process, or None."""
    for point in (curve or {}).get(impl, []):
        if point["count"] == count and "skipped" not in point and "rss_mib" in point:
            return point
    return None


def largest_fit(curve, impl):
    fitting = [p["count"] for p in curve[impl] if p.get("fits")]
    return max(fitting) if fitting else None


NEIGHBOUR_SITES = ("quiet", "busy")


def neighbours(api, commands, leases, neighbour_leases, windows, seconds, warmup,
               converge_timeout):  # fmt: skip
    """A `leases`-lease process of each implementation in a quiet namespace of its own, and one
    in a namespace where a neighbour (go-electors, one process) renews `neighbour_leases` Leases
    of its own: all four at the same time, so they share the machine's and the API server's load
    and differ only by their namespace. RSS and CPU of each over `windows` windows."""
    log(
        f"figure 6: neighbours, a {leases}-lease process of each implementation in a quiet "
        f"namespace and beside a neighbour renewing {neighbour_leases:,} leases, all at once"
    )
    busy = api.create_namespace("bench-busy")
    neighbour, neighbour_names = commands.scale_fleet(
        GO, busy, neighbour_leases, prefix="neighbour", name="neighbour"
    )
    fleets = {}
    try:
        started = monotonic()
        neighbour_id = neighbour.start()
        converged, led, _ = wait_led(api, neighbour, neighbour_names, started, converge_timeout)
        if converged is None:
            raise RuntimeError(
                f"the neighbour led {led:,} of its {neighbour_leases:,} leases after "
                f"{converge_timeout:.0f} s"
            )
        log(f"  the neighbour leads its {neighbour_leases:,} leases after {converged:.1f} s")
        for impl in (OURS, GO):
            short = "rust" if impl == OURS else "go"
            quiet = api.create_namespace(f"bench-quiet-{short}")
            for site, namespace in (("quiet", quiet), ("busy", busy)):
                fleets[impl, site] = commands.scale_fleet(
                    impl, namespace, leases, prefix=f"{short}-lease"
                )
        started = monotonic()
        ids = {key: fleet.start() for key, (fleet, _) in fleets.items()}
        for (impl, site), (fleet, names) in fleets.items():
            converged, led, _ = wait_led(api, fleet, names, started, converge_timeout)
            if converged is None:
                raise RuntimeError(f"{impl} ({site}) led {led} of its {leases} leases")
        time.sleep(warmup)
        pids = {
            f"{impl} {site}": fleet.members[ids[impl, site]].pid
            for (impl, site), (fleet, _) in fleets.items()
        }
        pids["neighbour"] = neighbour.members[neighbour_id].pid
        measured = measure_windows(api, {**pids, **control_plane_pids()}, windows, seconds)
    except (OSError, RuntimeError, TimeoutError, http.client.HTTPException) as error:
        log(f"  neighbours: not measured: {error}")
        return {"error": str(error), "leases": leases, "neighbour_leases": neighbour_leases}
    finally:
        for fleet, _ in fleets.values():
            fleet.stop_all()
        neighbour.stop_all(timeout=60)
    window_s = sum(w["seconds"] for w in measured)
    results = {
        "leases": leases,
        "neighbour_leases": neighbour_leases,
        "window_s": window_s,
        "requests_per_s": sum(sum(w["requests"].values()) for w in measured) / window_s,
        "neighbour_cpu_percent": cpu_percent(measured, "neighbour"),
        "apiserver_cpu_percent": cpu_percent(measured, "kube-apiserver"),
        "etcd_cpu_percent": cpu_percent(measured, "etcd"),
    }
    for impl in (OURS, GO):
        results[impl] = {}
        for site in NEIGHBOUR_SITES:
            id = f"{impl} {site}"
            results[impl][site] = {
                "rss_mib": max(w["rss_kib"][id] for w in measured) / 1024,
                # CPU time per minute: /proc/PID/stat, and the threads' schedstat as a cross-check
                "cpu_ms_per_min": cpu_percent(measured, id) * 600,
                "cpu_fine_ms_per_min": sum(w["cpu_fine"][id] for w in measured) * 60_000 / window_s,
            }
    log(f"  {json.dumps(results)}")
    return results


# ---------------------------------------------------------------------------------------------
# The results file.


def fmt_ms(seconds):
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def fmt_s(seconds):
    return f"{seconds:.3f} s"


def ratio(ours, theirs):
    if theirs == 0 or any(isinstance(x, float) and math.isnan(x) for x in (ours, theirs)):
        return "n/a"
    return f"{ours / theirs:.2f}"


def command_output(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return (
        f"{model}, {os.cpu_count()} logical CPUs, {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"Linux {platform.release()}"
    )


def versions(commands):
    commit = command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "-C", str(REPO), "status", "--porcelain"])
    crate = "unknown"
    manifest = (REPO / "Cargo.toml").read_text()
    if m := re.search(r'\[workspace\.package\]\s*version = "([^"]+)"', manifest):
        crate = m.group(1)
    apiserver = command_output([str(commands.bin_dir / "kube-apiserver"), "--version"])
    client_go = "unknown"
    gomod = (REPO / "benches" / "go-electors" / "go.mod").read_text()
    if m := re.search(r"k8s\.io/client-go (v\S+)", gomod):
        client_go = m.group(1)
    return [
        f"leader {crate} at commit {commit}{' (with uncommitted changes)' if dirty else ''}, "
        "release build",
        command_output(["rustc", "--version"]),
        f"client-go {client_go}, built with {command_output(['go', 'version'])}",
        apiserver.replace("Kubernetes", "kube-apiserver"),
    ]


def verdict(ok):
    return "met" if ok else "**missed**"


def table_row(figure, ours_text, theirs_text, ratio_text, target=""):
    return f"| {figure} | {ours_text} | {theirs_text} | {ratio_text} | {target} |"


NEIGHBOURS_TOLERANCE = 1.2  # ours beside the neighbour, at most this many times ours alone


def neighbour_figures(nb):
    """Rows of the results table for figure 6, and the targets it missed."""
    if nb is None:
        return [], []
    label = f"Neighbours ({nb['leases']} leases; {nb['neighbour_leases']:,} neighbour leases)"
    if "error" in nb:
        return [table_row(label, "not measured", "not measured", "n/a", nb["error"])], [
            f"Neighbours: not measured ({nb['error']})."
        ]
    rows, misses = [], []
    measures = (
        ("rss_mib", "RSS", lambda v: f"{v:.1f} MiB"),
        ("cpu_ms_per_min", "CPU time per minute", lambda v: f"{v:,.0f} ms"),
    )
    for key, what, fmt in measures:
        quiet, busy = nb[OURS]["quiet"][key], nb[OURS]["busy"][key]
        theirs_busy = nb[GO]["busy"][key]
        for site, where in (("quiet", "in a quiet namespace"), ("busy", "beside the neighbour")):
            o, t = nb[OURS][site][key], nb[GO][site][key]
            target = ""
            if site == "busy":
                within = busy <= NEIGHBOURS_TOLERANCE * quiet
                below = busy < theirs_busy
                target = (
                    f"ours ≤ {NEIGHBOURS_TOLERANCE:g} × ours quiet ({ratio(busy, quiet)} ×): "
                    f"{verdict(within)}; ours < client-go: {verdict(below)}"
                )
                if not within:
                    misses.append(
                        f"Neighbours, {what}: ours beside {nb['neighbour_leases']:,} neighbour "
                        f"leases is {fmt(busy)}, {ratio(busy, quiet)} times ours in a quiet "
                        f"namespace ({fmt(quiet)}); the target is {NEIGHBOURS_TOLERANCE:g} times."
                    )
                if not below:
                    misses.append(
                        f"Neighbours, {what}: ours beside the neighbour is {fmt(busy)}, not "
                        f"below client-go's {fmt(theirs_busy)}."
                    )
            rows.append(
                table_row(f"{label}: {what} of the process {where}", fmt(o), fmt(t),
                          ratio(o, t), target)
            )  # fmt: skip
    return rows, misses


def curve_figure_values(sc, impl):
    """{figure: {count: value}} of one implementation's cost curve, measured points only."""
    values = {}
    points = [p for p in sc[impl] if curve_point(sc, impl, p["count"])]
    for p in points:
        n = p["count"]
        cpu = list(p["cpu_percent"].values())
        for figure, v in (
            ("converged", p["converged_s"]),
            ("rss_max", max(p["rss_mib"].values())),
            ("rss_mean", p["rss_mean_mib"]),
            ("cpu_mean", statistics.mean(cpu)),
            ("cpu_max", max(cpu)),
            ("apiserver", p["apiserver_cpu_percent"]),
            ("etcd", p["etcd_cpu_percent"]),
            ("requests", p["requests_per_s"]),
        ):
            if v is not None:
                values.setdefault(figure, {})[n] = v
    # memory per lease: what each lease adds to the mean RSS, above the smallest size measured
    if points:
        base = points[0]
        for p in points[1:]:
            values.setdefault("per_lease", {})[p["count"]] = (
                (p["rss_mean_mib"] - base["rss_mean_mib"]) * 1024 / (p["count"] - base["count"])
            )
    return values


def seconds_text(v):
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s"


# (key, label, format, chart file, y axis, log y)
CURVE_FIGURES = (
    ("converged", "time until every lease has a leader", seconds_text, "curve-convergence.svg",
     "seconds", True),
    ("rss_max", "RSS per process, largest", lambda v: f"{v:.1f} MiB", "curve-rss.svg", "MiB", True),
    ("rss_mean", "RSS per process, mean", lambda v: f"{v:.1f} MiB", None, None, True),
    ("per_lease", "memory per lease (mean RSS above the smallest size, per lease)",
     lambda v: f"{v:.1f} KiB", "curve-memory-per-lease.svg", "KiB per lease", False),
    ("cpu_mean", "CPU per process, mean (% of one core)", lambda v: f"{v:.1f} %",
     "curve-cpu.svg", "% of one core", True),
    ("cpu_max", "CPU per process, largest (% of one core)", lambda v: f"{v:.1f} %", None, None,
     True),
    ("apiserver", "kube-apiserver CPU (% of one core)", lambda v: f"{v:.0f} %",
     "curve-control-plane-cpu.svg", "% of one core", True),
    ("etcd", "etcd CPU (% of one core)", lambda v: f"{v:.0f} %", None, None, True),
    ("requests", "lease requests per second at the API server", lambda v: f"{v:,.0f}",
     "curve-requests.svg", "requests per second", True),
)  # fmt: skip
MEMORY_GROWTH_TOLERANCE = 1.2  # memory per lease at the largest size over its smallest value


def curve_figures(sc, converge_timeout):
    """Rows of the results table for figure 4's cost curve (one row per figure, the sizes side
    by side), and the targets it missed: ours ≤ client-go at every size both measured, and our
    memory per lease not growing with the number of leases."""
    if sc is None:
        return [], []
    sizes = sc["sizes"]
    label = f"Cost curve ({' · '.join(f'{n:,}' for n in sizes)} leases per process × 3)"
    values = {impl: curve_figure_values(sc, impl) for impl in (OURS, GO)}
    rows, misses = [], []

    def fit_text(impl):
        largest = largest_fit(sc, impl)
        stopped = [p for p in sc[impl] if p.get("stopped_by")]
        text = "none" if largest is None else f"{largest:,}"
        if stopped:
            text += f" ({stopped[0]['count']:,} did not fit)"
        return text

    rows.append(table_row(f"{label}: largest size that fit", fit_text(OURS), fit_text(GO), "—"))

    def cell(impl, figure, n, fmt):
        point = next(p for p in sc[impl] if p["count"] == n)
        if "skipped" in point:
            return "—"
        v = values[impl].get(figure, {}).get(n)
        if v is None:
            return "not all led" if figure == "converged" and "rss_mib" in point else "—"
        return fmt(v) + ("" if point["fits"] else "\\*")

    def fits(impl, n):
        return any(p["count"] == n and p.get("fits") for p in sc[impl])

    for figure, what, fmt, *_ in CURVE_FIGURES:
        ours, theirs = values[OURS].get(figure, {}), values[GO].get(figure, {})
        both = [n for n in sizes if n in ours and n in theirs]
        # A size that fit for neither is shown, not judged: both were measured in overload.
        judged = [n for n in both if fits(OURS, n) or fits(GO, n)]
        worse = [n for n in judged if ours[n] > theirs[n]]
        target = f"ours ≤ client-go at every size: {verdict(not worse)}" if judged else ""
        if worse:
            misses.append(
                f"Cost curve, {what}: ours above client-go at "
                + ", ".join(f"{n:,} ({fmt(ours[n])} against {fmt(theirs[n])})" for n in worse)
                + "."
            )
        fitting = {n: v for n, v in ours.items() if fits(OURS, n)}
        if figure == "per_lease" and len(fitting) >= 2:
            first, last = fitting[min(fitting)], fitting[max(fitting)]
            flat = last <= MEMORY_GROWTH_TOLERANCE * max(first, 0.0) or last <= 0
            target += f"; ours does not grow: {verdict(flat)}"
            if not flat:
                misses.append(
                    f"Cost curve: our memory per lease grows from {fmt(first)} at "
                    f"{min(fitting):,} leases to {fmt(last)} at {max(fitting):,}."
                )
        rows.append(
            table_row(
                f"{label}: {what}",
                " · ".join(cell(OURS, figure, n, fmt) for n in sizes),
                " · ".join(cell(GO, figure, n, fmt) for n in sizes),
                " · ".join(ratio(ours[n], theirs[n]) if n in both else "—" for n in sizes),
                target,
            )
        )
    return rows, misses


def write_report(path, svg_dir, data, commands, args, started_at, elapsed):
    g, k, st, sc = data["graceful"], data["kill"], data["steady"], data["scale"]
    lines = []
    add = lines.append
    add("# Benchmarks: ours against client-go")
    add("")
    add(
        "Written by `make bench` (`benches/bench.py`); do not edit by hand. Every figure was "
        "measured in one run, ours and client-go side by side on the same local control plane "
        "(kube-apiserver and etcd on 127.0.0.1, `tests/control-plane`), with the production "
        "timings: lease duration 15 s, renew deadline 10 s, retry period 2 s."
    )
    add("")
    add(f"- Date: {started_at:%Y-%m-%d %H:%M} UTC, run time {elapsed / 60:.0f} min")
    add(f"- Machine: {machine()}")
    loads = "; ".join(f"{k} {v}" for k, v in data["loads"].items())
    add(
        f"- 1-minute load average (the benchmark's own processes included): at start "
        f"{data['load_at_start'].split(',')[0]}; {loads}"
    )
    for version in data.get("versions") or versions(commands):
        add(f"- {version}")
    add(
        "- Ours: `examples/election.rs` (failover, scale) and `examples/periodic.rs` (request "
        "rates, footprint); client-go: the interop peer `tests/control-plane/peer` "
        "(`tools/leaderelection`, `LeaseLock`, `ReleaseOnCancel`) and `benches/go-electors` "
        "(scale)"
    )
    if args.quick:
        add("- **Quick run (`--quick`): trial counts and windows too small to mean anything.**")
    add("")

    # -- the table
    ours_g, go_g = g[OURS], g[GO]
    ours_k_renew = [r for _, r in k[OURS] if r is not None]
    go_k_renew = [r for _, r in k[GO] if r is not None]
    ours_k_kill = [x for x, _ in k[OURS]]
    go_k_kill = [x for x, _ in k[GO]]
    so, sg = summarize_steady(st[OURS], OURS), summarize_steady(st[GO], GO)
    # the scale figure is the cost curve's point at --scale-leases
    sco, scg = curve_point(sc, OURS, args.scale_leases), curve_point(sc, GO, args.scale_leases)
    nb = data.get("neighbours")

    rows = []

    def row(figure, ours, theirs, ours_text, theirs_text, target=""):
        rows.append(f"| {figure} | {ours_text} | {theirs_text} | {ratio(ours, theirs)} | {target} |")

    n_g, n_k = len(ours_g), len(ours_k_kill)
    p50g = percentile(ours_g, 50)
    row(
        f"Graceful failover p50 ({n_g} trials each)",
        p50g, percentile(go_g, 50), fmt_ms(p50g), fmt_ms(percentile(go_g, 50)),
        f"ours ≤ 100 ms: {verdict(p50g <= 0.1)}",
    )  # fmt: skip
    row(
        "Graceful failover p99",
        percentile(ours_g, 99), percentile(go_g, 99),
        fmt_ms(percentile(ours_g, 99)), fmt_ms(percentile(go_g, 99)),
    )  # fmt: skip
    p99k = percentile(ours_k_renew, 99)
    mink = min(ours_k_renew) if ours_k_renew else float("nan")
    for label, p in (("p50", 50), ("p99", 99)):
        o, t = percentile(ours_k_renew, p), percentile(go_k_renew, p)
        target = ""
        if p == 99:
            target = f"ours ≤ 15.100 s: {verdict(p99k <= LEASE_DURATION + 0.1)}"
        trials = f" ({n_k} trials each)" if p == 50 else ""
        row(
            f"SIGKILL failover from the last renew, {label}{trials}",
            o, t, fmt_s(o), fmt_s(t), target,
        )  # fmt: skip
    o, t = max(ours_k_renew, default=float("nan")), max(go_k_renew, default=float("nan"))
    row("SIGKILL failover from the last renew, max", o, t, fmt_s(o), fmt_s(t))
    o, t = mink, min(go_k_renew, default=float("nan"))
    row(
        "SIGKILL failover from the last renew, min",
        o, t, fmt_s(o), fmt_s(t), f"ours ≥ 15.000 s: {verdict(mink >= LEASE_DURATION)}",
    )  # fmt: skip
    for label, p in (("p50", 50), ("p99", 99)):
        o, t = percentile(ours_k_kill, p), percentile(go_k_kill, p)
        row(f"SIGKILL failover from the kill, {label}", o, t, fmt_s(o), fmt_s(t))
    o, t = max(ours_k_kill), max(go_k_kill)
    row("SIGKILL failover from the kill, max", o, t, fmt_s(o), fmt_s(t))
    for role in ("leader", "follower"):
        o, t = so[f"{role}_per_min"], sg[f"{role}_per_min"]
        row(
            f"Lease requests per minute, {role}",
            o, t, f"{o:.1f}", f"{t:.1f}", f"ours ≤ half: {verdict(o <= t / 2)}",
        )  # fmt: skip
    o, t = so["fleet3_per_candidate_per_min"], sg["fleet3_per_candidate_per_min"]
    row("Lease requests per minute per candidate, fleet of 3 (average)", o, t, f"{o:.1f}", f"{t:.1f}")
    scale_misses = []
    if sco and scg:
        scale_label = f"Scale ({sco['count']:,} leases × {sco['replicas']} processes)"

        def converged_text(result):
            if result["converged_s"] is None:
                return f"not all within {args.converge_timeout:.0f} s ({result['led_at_end_of_wait']:,} led)"
            return f"{result['converged_s']:.1f} s"

        o = sco["converged_s"] if sco["converged_s"] is not None else float("nan")
        t = scg["converged_s"] if scg["converged_s"] is not None else float("nan")
        row(f"{scale_label}: time until every lease has a leader", o, t,
            converged_text(sco), converged_text(scg))  # fmt: skip
        o, t = sco["requests_per_s"], scg["requests_per_s"]
        row(f"{scale_label}: lease requests per second, all replicas", o, t, f"{o:.0f}", f"{t:.0f}")
        o, t = max(sco["rss_mib"].values()), max(scg["rss_mib"].values())
        row(f"{scale_label}: RSS per replica, largest", o, t, f"{o:.1f} MiB", f"{t:.1f} MiB",
            f"ours ≤ 0.5 × client-go: {verdict(o <= t / 2)}")  # fmt: skip
        if o > t / 2:
            scale_misses.append(
                f"{scale_label}, RSS per replica, largest: ours {o:.1f} MiB is {o / t:.3f} of "
                f"client-go's {t:.1f} MiB, {o - t / 2:.1f} MiB over half."
            )
        o, t = sum(sco["cpu_percent"].values()), sum(scg["cpu_percent"].values())
        row(
            f"{scale_label}: CPU of the 3 replicas together (% of one core)",
            o, t, f"{o:.1f} %", f"{t:.1f} %",
        )  # fmt: skip
        o, t = sco["apiserver_cpu_percent"], scg["apiserver_cpu_percent"]
        row(f"{scale_label}: kube-apiserver CPU meanwhile (% of one core)", o, t,
            f"{o:.0f} %", f"{t:.0f} %")  # fmt: skip
        o, t = sco["leadership_changes"], scg["leadership_changes"]
        row(f"{scale_label}: leadership changes during the windows", o, t, f"{o}", f"{t}")
    else:
        rows.append(
            f"| Scale ({args.scale_leases:,} leases × 3 processes) | not measured | not measured "
            "| n/a | see the cost curve |"
        )
    for role in ("leader", "follower"):
        o, t = so[f"{role}_rss_kib"] / 1024, sg[f"{role}_rss_kib"] / 1024
        row(f"Idle footprint, {role}: RSS", o, t, f"{o:.1f} MiB", f"{t:.1f} MiB")
        o, t = so[f"{role}_cpu_s_per_hour"], sg[f"{role}_cpu_s_per_hour"]
        row(f"Idle footprint, {role}: CPU seconds per hour", o, t, f"{o:.1f} s", f"{t:.1f} s")
    neighbour_rows, neighbour_misses = neighbour_figures(nb)
    curve_rows, curve_misses = curve_figures(sc, args.converge_timeout)
    rows.extend(neighbour_rows + curve_rows)

    add("## Results")
    add("")
    add("| Figure | ours | client-go | ours / client-go | target |")
    add("| --- | ---: | ---: | ---: | --- |")
    lines.extend(rows)
    add("")
    add("![Failover distributions](benchmarks/failover.svg)")
    add("")
    if nb and "error" not in nb:
        add("![Neighbours: RSS and CPU of a 10-lease process](benchmarks/neighbours.svg)")
        add("")
    if sc:
        add("### Cost curve")
        add("")
        add(
            "Values marked \\* were measured at a size that did not fit; — is a size not "
            "measured. A size that fit for neither implementation is shown but not judged "
            "against the targets: both were measured in overload, where the figures say how "
            "each one fails, not what it costs. What stopped each implementation:"
        )
        add("")
        for impl in (OURS, GO):
            stopped = [p for p in sc[impl] if p.get("stopped_by")]
            largest = largest_fit(sc, impl)
            largest = "none" if largest is None else f"{largest:,}"
            if stopped:
                add(
                    f"- {impl}: {stopped[0]['count']:,} leases per process did not fit: "
                    f"{stopped[0]['stopped_by']}. The largest size that fit: {largest}."
                )
            else:
                add(f"- {impl}: nothing; every size fit (up to {largest} leases per process).")
        add("")
        for chart, (title, _) in curve_svgs(sc).items():
            add(f"![Cost curve: {title}](benchmarks/{chart})")
            add("")

    # -- targets
    add("## Targets")
    add("")
    misses = []
    if p50g > 0.1:
        misses.append(
            f"Graceful failover p50 is {fmt_ms(p50g)}, {fmt_ms(p50g - 0.1)} over the 100 ms target."
        )
    if p99k > LEASE_DURATION + 0.1:
        misses.append(
            f"SIGKILL failover p99 from the last renew is {fmt_s(p99k)}, "
            f"{fmt_ms(p99k - LEASE_DURATION - 0.1)} over lease duration + 100 ms."
        )
    if mink < LEASE_DURATION:
        misses.append(
            f"A SIGKILL takeover came {fmt_ms(LEASE_DURATION - mink)} before the lease duration "
            "had passed since the last renew."
        )
    for role in ("leader", "follower"):
        o, t = so[f"{role}_per_min"], sg[f"{role}_per_min"]
        if o > t / 2:
            why = MISS_REASONS.get(role, "")
            misses.append(
                f"The {role} makes {o:.1f} lease requests per minute against client-go's "
                f"{t:.1f}: {o / t:.2f} of client-go's, {o - t / 2:.1f} per minute over half. {why}"
            )
    misses.extend(scale_misses + neighbour_misses + curve_misses)
    if not misses:
        add("Every target was met.")
    for miss in misses:
        add(f"- {miss}")
    add("")
    expected_puts = sco["count"] / 2.0 if sco else 0.0  # one renew per lease per retry period
    ours_puts = sco["verbs_per_s"].get("PUT", 0.0) if sco else 0.0
    if sco and ours_puts > 1.25 * expected_puts:
        add(
            f"**Scale anomaly.** Our three processes made {ours_puts:.0f} PUT/s in steady state, "
            f"{ours_puts / expected_puts:.1f} times the one renew per lease per retry period "
            f"({expected_puts:.0f}/s) they make when the API server keeps up; lease watches were "
            f"reopened {sco['verbs_per_s'].get('WATCH', 0.0) * 60:.0f} times per minute. "
            + SCALE_AMPLIFICATION
        )
        add("")

    # -- details
    add("## Details")
    add("")
    add(
        "Lease requests per minute by verb (median over the windows), as kube-apiserver counted "
        "them, its own included:"
    )
    add("")
    add("| fleet | verbs per minute |")
    add("| --- | --- |")

    def verb_text(verbs):
        return ", ".join(f"{v} {n:.1f}" for v, n in sorted(verbs.items()) if n >= 0.05) or "none"

    add(f"| none (the API server alone) | {verb_text(st['baseline']['per_min'])} |")
    for impl, s in ((OURS, so), (GO, sg)):
        for label, verbs in (("leader alone", s["verbs_alone"]), ("leader + 2 followers", s["verbs_three"])):
            add(f"| {impl}, {label} | {verb_text(verbs)} |")
    add("")
    for impl, s in ((OURS, so), (GO, sg)):
        add(
            f"- Idle CPU of {impl} in 10 ms ticks (`/proc/PID/stat`), as a cross-check: leader "
            f"{s['leader_cpu_ticks_s']:.2f} s in {s['leader_cpu_window_s'] / 60:.1f} min, a follower "
            f"{s['follower_cpu_ticks_s']:.2f} s in {s['follower_cpu_window_s'] / 60:.1f} min."
        )
    add("")
    if nb and "error" not in nb:
        add(
            f"Neighbours: during the {nb['window_s'] / 60:.1f} min of measurement the API server "
            f"served {nb['requests_per_s']:.0f} lease requests per second (the neighbour's "
            f"renewals, mostly) with {nb['apiserver_cpu_percent']:.0f} % of one core, etcd used "
            f"{nb['etcd_cpu_percent']:.0f} %, the neighbour {nb['neighbour_cpu_percent']:.0f} %. "
            "CPU time per minute of the 10-lease processes, from their threads' schedstat as a "
            "cross-check of `/proc/PID/stat`: "
            + "; ".join(
                f"{impl} {site} {nb[impl][site]['cpu_fine_ms_per_min']:,.0f} ms"
                for impl in (OURS, GO)
                for site in NEIGHBOUR_SITES
            )
            + "."
        )
        add("")
    if sc:
        add(
            "Scale and cost curve, per replica (CPU in % of one core over the windows; RSS, the "
            "largest):"
        )
        add("")
        add(
            "| implementation | leases per process | replica | leases held at the end | CPU "
            "| RSS |"
        )
        add("| --- | ---: | --- | ---: | ---: | ---: |")
        for impl in (OURS, GO):
            for count in sc["sizes"]:
                result = curve_point(sc, impl, count)
                for id in sorted(result["rss_mib"]) if result else ():
                    add(
                        f"| {impl} | {count:,} | {id} | {result['holders'].get(id, 0):,} | "
                        f"{result['cpu_percent'][id]:.1f} % | {result['rss_mib'][id]:.1f} MiB |"
                    )
        add("")
        for impl in (OURS, GO):
            for count in sc["sizes"]:
                result = curve_point(sc, impl, count)
                if not result:
                    continue
                verbs = ", ".join(
                    f"{v} {n:.1f}" for v, n in sorted(result["verbs_per_s"].items()) if n >= 0.05
                )
                renews = result["verbs_per_s"].get("PUT", 0.0) * RETRY_PERIOD_S / count
                add(
                    f"- {impl}, {count:,} leases per process: lease requests per second by verb "
                    f"(API server's own included): {verbs or 'none'}; renews per lease per "
                    f"retry period {renews:.2f}; leadership changes during the windows "
                    f"{result['leadership_changes']:,}; 429 answers {result['throttled']:,.0f}."
                )
        add("")

    # -- method
    add("## Method")
    add("")
    add(METHOD.format(
        graceful=n_g, kill=n_k, windows=args.windows, window=args.window,
        warmup=args.warmup, count=args.scale_leases, replicas=3,
        scale_windows=args.scale_windows, scale_window=args.scale_window,
        leader_cpu_window=so["leader_cpu_window_s"] / 60,
        follower_cpu_window=so["follower_cpu_window_s"] / 60,
        converge=args.converge_timeout,
        trials=CONVERGENCE_TRIALS, trials_up_to=CONVERGENCE_TRIALS_UP_TO,
        watch_timeout=WATCH_TIMEOUT_S, watch_rate=OURS_WATCH_PER_MIN,
        baseline_windows=args.baseline_windows,
        baseline=sum(n for v, n in st["baseline"]["per_min"].items() if v != "WATCH"),
        sizes=", ".join(f"{n:,}" for n in args.scale_sizes),
        nb_leases=args.neighbours_leases, nb_busy=f"{args.neighbours_busy:,}",
        nb_windows=args.neighbours_windows, nb_window=args.neighbours_window,
        nb_tolerance=NEIGHBOURS_TOLERANCE, min_renews=MIN_RENEWS_PER_RETRY_PERIOD,
    ))  # fmt: skip
    add("")
    add("<details><summary>Every trial (seconds)</summary>")
    add("")
    add(f"- Graceful, ours: {', '.join(f'{x:.4f}' for x in ours_g)}")
    add(f"- Graceful, client-go: {', '.join(f'{x:.4f}' for x in go_g)}")
    for impl in (OURS, GO):
        pairs = ", ".join(
            f"{a:.3f}/{'?' if b is None else f'{b:.3f}'}" for a, b in k[impl]
        )
        add(f"- SIGKILL, {impl} (from the kill / from the last renew): {pairs}")
    for impl in (OURS, GO):
        for p in (sc or {}).get(impl, []):
            trials = p.get("converged_trials_s") or []
            if len(trials) > 1:
                times = ", ".join("?" if t is None else f"{t:.3f}" for t in trials)
                add(
                    f"- Cost curve, {impl}, {p['count']:,} leases per process, time until every "
                    f"lease has a leader at each start: {times}"
                )
    add("")
    add("</details>")
    add("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    svg_dir.mkdir(parents=True, exist_ok=True)
    (svg_dir / "failover.svg").write_text(failover_svg(g, k))
    if nb and "error" not in nb:
        (svg_dir / "neighbours.svg").write_text(neighbours_svg(nb))
    if sc:
        for name, (_, svg) in curve_svgs(sc).items():
            (svg_dir / name).write_text(svg)


MISS_REASONS = {
    "leader": (
        "Why: the leader renews once per retry period (2 s), exactly as client-go's leader "
        "does, since that cadence is what gives it several attempts before its 10 s renew "
        "deadline; a renew is one PUT for both. Our savings are on the followers, which follow "
        "the lease through one shared watch instead of a GET per retry period. What would close "
        "it: renew less often than the retry period while the API server answers (e.g. every "
        "renew deadline / 3, falling back to the retry period after a failure), which client-go "
        "followers tolerate since they only need a renew within each lease duration."
    ),
    "follower": (
        "Why: see the per-verb table below; followers should only hold a watch open."
    ),
}

SCALE_AMPLIFICATION = (
    "The likely cause is in the leader's loop (`leader-runtime/src/elector.rs`, "
    "`check_feed_while_leading`): when the lease watch lags behind the leader's own writes by "
    "more than a retry period, the watch delivers the leader's previous renew after the next one "
    "returned; that record names us but differs from our last write, which is answered with an "
    "immediate renew (`FeedCheck::RenewNow`). Each of those renews is echoed late again, so once "
    "the API server falls behind the leaders renew as fast as echoes arrive, which can keep it "
    "behind (kube-apiserver then also closes the slow watches). Ignoring echoes older than our "
    "last write (by resourceVersion) would close it."
)

METHOD = """\
- **Graceful failover** (figure 1): 3 candidates of each implementation, each fleet on a Lease
  in a namespace of its own; trials alternate between the fleets, {graceful} per fleet. A trial
  waits a random 0-1 s, sends SIGTERM to the leader and measures until another candidate prints
  `leading`: both programs stamp their lines with CLOCK_MONOTONIC (`--timestamps`), the clock the
  runner reads before the signal. The stopped candidate is replaced by one with a new identity,
  and the next trial starts once it has seen the leader. p50/p99 interpolate linearly between
  order statistics of all trials (with {graceful} trials p99 is close to the maximum).
- **SIGKILL failover** (figure 2): the same, with SIGKILL and a random 0-2 s wait, {kill} trials
  per fleet; the two fleets run at the same time (separate namespaces, one API server). "From the
  last renew" is from the `renewTime` the killed leader left in the Lease (read right after the
  kill; the Lease's MicroTime has microsecond precision, taken from CLOCK_REALTIME, converted to
  CLOCK_MONOTONIC with the offset measured at the kill). Followers measure expiry from when they
  saw the last change, so a takeover can never come earlier than one lease duration after the
  last renew.
- **Lease requests per candidate** (figure 3), counted by kube-apiserver: its `/metrics`
  (`apiserver_request_total{{resource="leases"}}`, every verb) is read at the start and the end
  of each window. That counter counts a request when it completes, so a watch is counted when it
  starts instead: completed watches plus the change of `apiserver_longrunning_requests` (open
  watches) over the window. kube-apiserver renews its own identity Lease (in kube-system) every
  10 s: {baseline_windows} windows of the API server alone come first, and their rate
  ({baseline:.1f} per minute, WATCH aside) is subtracted from every window (here and in the
  scale figure). Watches are counted apart: each of our processes keeps one lease watch open,
  which kube's watcher reopens every {watch_timeout} s (its `timeoutSeconds`), too rare to fall
  reliably into a window, so ours are charged {watch_rate:.2f} requests per minute for it; the
  peer opens no watch (client-go's `LeaseLock` only gets, creates and updates), and the API
  server's own lease watches, reopened now and then, are left out on both sides.
  The fleets run one after the other, nothing else on the API server: one candidate alone ({windows} windows of {window:.0f} s after a {warmup:.0f} s warm-up) gives
  the leader's rate; two followers are added, and ({windows} more windows) each follower's rate
  is (total - leader) / 2. Figures are medians over the windows. Ours is `examples/periodic.rs` (the attributes over the same runtime as
  `examples/election.rs`), client-go is the peer.
- **Scale and cost curve** (figure 4): at each size N of {sizes} leases per process,
  {replicas} processes started at once, each campaigning for the same N Leases in a fresh
  namespace (ours: `examples/election.rs --lease-lock-name scale-0,...`; client-go:
  `benches/go-electors`, N `LeaderElector`s on one clientset with client-go's client-side rate
  limit off, as its default 5 requests per second could not renew 1,000 leases). The scale
  rows are the point at N = {count}. Time until every Lease has a holder: from the start until
  the last Lease is first taken (the candidates' `leading` lines), confirmed by a LIST that
  finds a holder in each (LISTs repeat, every 0.25 s or every N / 4,000 s if longer, until
  then; given up after {converge:.0f} s). Up to {trials_up_to} leases per process, where a
  start takes a fraction of a second and one start says little, it is the median of
  {trials} starts, ours and client-go in turn, each in a fresh namespace (every start is
  under "Every trial"); above, of one. Then, after a {warmup:.0f} s warm-up,
  {scale_windows} windows of {scale_window:.0f} s give lease requests per second at the API
  server (less the API server's own rate), CPU over the windows (utime + stime from
  `/proc/PID/stat`, exact to the 10 ms tick and counting exited threads, in % of one core) of
  each replica, kube-apiserver and etcd, the largest VmRSS of each replica, and the leadership
  changes (`leading` lines) during the windows. Memory per lease is what one more lease adds to
  the mean RSS of a process: (mean RSS at N - mean RSS at the smallest size) / (N - smallest
  size). A size fits when every Lease had a leader within {converge:.0f} s, no process exited,
  fewer than 1 % of the Leases changed leader during the windows (leaders that lose their
  leases in steady state mean renewals no longer get through within the renew deadline), and
  the leaders renewed each Lease at least {min_renews} times per retry period (PUTs at the API
  server; once when it answers at once, fewer when each request takes seconds); an
  implementation is not tried at larger sizes after one that does not fit. At each size
  ours runs first, then client-go, one after the other; the series runs last, as its largest
  size can leave the API server overloaded.
- **Idle footprint** (figure 5): measured on the processes of figure 3. The leader's CPU is
  over all its windows ({leader_cpu_window:.0f} min), a follower's over the 3-candidate windows
  ({follower_cpu_window:.0f} min), extrapolated to one hour. CPU time is the run time of the
  process's threads (`/proc/PID/task/TID/schedstat`, nanoseconds; the 10 ms ticks of
  `/proc/PID/stat` are too coarse for idle processes). RSS is the largest VmRSS seen.
- **Neighbours** (figure 6): one process of each implementation campaigning for
  {nb_leases} Leases in a quiet namespace of its own, and one of each for {nb_leases} Leases
  of its own in a namespace where a neighbour (`benches/go-electors`, one process, client-go
  like most programs sharing a real namespace) holds and renews {nb_busy} Leases. The neighbour
  leads its Leases before the four processes start; the four start together and run side by
  side, so they share the machine's and the API server's load and differ only by their
  namespace (the two busy ones see each other's {nb_leases} Leases too). Once each leads its
  Leases, after a {warmup:.0f} s warm-up, {nb_windows} windows of {nb_window:.0f} s give the
  largest VmRSS of each and its CPU time per minute (utime + stime from `/proc/PID/stat` over
  the windows). Targets: ours beside the neighbour ≤ {nb_tolerance:g} × ours in the quiet
  namespace, for memory and for CPU, and below client-go beside the neighbour.
- Ratios are ours / client-go; below 1 means ours is faster or smaller."""


# ---------------------------------------------------------------------------------------------
# The plot, a hand-written SVG: one strip of dots per implementation and measure.

COLORS = {OURS: "#c2410c", GO: "#1d4ed8"}


def failover_svg(graceful, kill):
    width, left, right = 780, 250, 30
    panels = [
        (
            "Graceful failover (SIGTERM to leading), log scale",
            [(f"{OURS}", OURS, graceful[OURS]), ("client-go", GO, graceful[GO])],
            "log",
        ),
        (
            "SIGKILL failover (seconds)",
            [
                (f"{OURS}, from the last renew", OURS, [r for _, r in kill[OURS] if r is not None]),
                ("client-go, from the last renew", GO, [r for _, r in kill[GO] if r is not None]),
                (f"{OURS}, from the kill", OURS, [x for x, _ in kill[OURS]]),
                ("client-go, from the kill", GO, [x for x, _ in kill[GO]]),
            ],
            "linear",
        ),
    ]
    row_h, panel_gap, top = 34, 70, 40
    height = top
    for _, rows, _ in panels:
        height += len(rows) * row_h + panel_gap
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    rng = random.Random(7)
    y0 = top
    for title, rows, scale_kind in panels:
        values = [v for _, _, vs in rows for v in vs if v > 0]
        if not values:
            values = [1.0]
        if scale_kind == "log":
            lo = 10 ** math.floor(math.log10(min(values)))
            hi = 10 ** math.ceil(math.log10(max(values)))
            if hi <= lo:
                hi = lo * 10

            def x_of(v, lo=lo, hi=hi):
                v = max(v, lo)
                return left + (math.log10(v) - math.log10(lo)) / (
                    math.log10(hi) - math.log10(lo)
                ) * (width - left - right)

            ticks, t = [], lo
            while t <= hi * 1.0001:
                ticks.append((t, f"{t * 1000:g} ms" if t < 1 else f"{t:g} s"))
                t *= 10
        else:
            lo = math.floor(min(min(values), LEASE_DURATION) - 0.5)
            hi = math.ceil(max(values) + 0.5)

            def x_of(v, lo=lo, hi=hi):
                return left + (v - lo) / (hi - lo) * (width - left - right)

            step = 1 if hi - lo <= 12 else 2
            ticks = [(float(t), f"{t} s") for t in range(int(lo), int(hi) + 1, step)]
        out.append(
            f'<text x="{left}" y="{y0 - 14}" font-weight="bold">{html.escape(title)}</text>'
        )
        plot_h = len(rows) * row_h
        for t, label in ticks:
            x = x_of(t)
            out.append(
                f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + plot_h}" stroke="#ddd"/>'
            )
            out.append(
                f'<text x="{x:.1f}" y="{y0 + plot_h + 16}" text-anchor="middle" '
                f'fill="#444">{html.escape(label)}</text>'
            )
        if scale_kind == "linear":
            for mark, label in ((LEASE_DURATION, "lease duration"),
                                (LEASE_DURATION + 0.1, "+100 ms")):  # fmt: skip
                x = x_of(mark)
                out.append(
                    f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + plot_h}" '
                    'stroke="#888" stroke-dasharray="4 3"/>'
                )
            out.append(
                f'<text x="{x_of(LEASE_DURATION):.1f}" y="{y0 - 2}" text-anchor="end" '
                'fill="#666" font-size="10">15 s lease duration</text>'
            )
        else:
            x = x_of(0.1)
            out.append(
                f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + plot_h}" '
                'stroke="#888" stroke-dasharray="4 3"/>'
            )
            out.append(
                f'<text x="{x:.1f}" y="{y0 - 2}" text-anchor="middle" fill="#666" '
                'font-size="10">100 ms target</text>'
            )
        for i, (label, impl, vs) in enumerate(rows):
            cy = y0 + i * row_h + row_h / 2
            out.append(
                f'<text x="{left - 10}" y="{cy + 4:.1f}" text-anchor="end">'
                f"{html.escape(label)} (n={len(vs)})</text>"
            )
            for v in vs:
                jitter = rng.uniform(-row_h * 0.28, row_h * 0.28)
                out.append(
                    f'<circle cx="{x_of(v):.1f}" cy="{cy + jitter:.1f}" r="3" '
                    f'fill="{COLORS[impl]}" fill-opacity="0.55"/>'
                )
            if vs:
                xm = x_of(percentile(vs, 50))
                out.append(
                    f'<line x1="{xm:.1f}" y1="{cy - row_h * 0.42:.1f}" x2="{xm:.1f}" '
                    f'y2="{cy + row_h * 0.42:.1f}" stroke="black" stroke-width="2"/>'
                )
        out.append(
            f'<rect x="{left}" y="{y0}" width="{width - left - right}" height="{plot_h}" '
            'fill="none" stroke="#999"/>'
        )
        y0 += plot_h + panel_gap
    out.append(
        f'<text x="{left}" y="{height - 12}" fill="#444">Each dot is one trial; the black bar '
        "is the median.</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def svg_open(width, height):
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]


def neighbours_svg(nb):
    """Figure 6 as bars: RSS and CPU time per minute of each 10-lease process."""
    width, left, right, bar_h, gap, top = 780, 270, 90, 20, 6, 40
    panels = (
        ("RSS (MiB)", "rss_mib", lambda v: f"{v:.1f} MiB"),
        ("CPU time per minute (ms)", "cpu_ms_per_min", lambda v: f"{v:,.0f} ms"),
    )
    bars = [
        (f"{impl}, {where}", impl, site)
        for impl in (OURS, GO)
        for site, where in (
            ("quiet", "quiet namespace"),
            ("busy", f"beside {nb['neighbour_leases']:,} neighbour leases"),
        )
    ]
    panel_h = len(bars) * (bar_h + gap)
    height = top + len(panels) * (panel_h + 60) - 30
    out = svg_open(width, height)
    y0 = top
    for title, key, fmt in panels:
        values = [nb[impl][site][key] for _, impl, site in bars]
        limit = NEIGHBOURS_TOLERANCE * nb[OURS]["quiet"][key]
        hi = max(values + [limit]) * 1.05 or 1.0

        def x_of(v, hi=hi):
            return left + v / hi * (width - left - right)

        out.append(f'<text x="{left}" y="{y0 - 12}" font-weight="bold">{html.escape(title)}</text>')
        for i, (label, impl, site) in enumerate(bars):
            y = y0 + i * (bar_h + gap)
            v = nb[impl][site][key]
            out.append(
                f'<text x="{left - 10}" y="{y + bar_h * 0.7:.1f}" text-anchor="end">'
                f"{html.escape(label)}</text>"
            )
            out.append(
                f'<rect x="{left}" y="{y}" width="{x_of(v) - left:.1f}" height="{bar_h}" '
                f'fill="{COLORS[impl]}" fill-opacity="{0.45 if site == "quiet" else 0.85}"/>'
            )
            out.append(
                f'<text x="{x_of(v) + 6:.1f}" y="{y + bar_h * 0.7:.1f}" fill="#333">'
                f"{html.escape(fmt(v))}</text>"
            )
        x = x_of(limit)
        out.append(
            f'<line x1="{x:.1f}" y1="{y0 - 4}" x2="{x:.1f}" y2="{y0 + panel_h}" stroke="#888" '
            'stroke-dasharray="4 3"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{y0 + panel_h + 14}" text-anchor="middle" fill="#666" '
            f'font-size="10">{NEIGHBOURS_TOLERANCE:g} × ours quiet (target)</text>'
        )
        y0 += panel_h + 60
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_ceiling(v):
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least v."""
    if v <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= v * 0.9999:
            return m * power
    return 10 * power


def curve_svg(title, unit, lines, log_y):
    """A chart of the cost curve: x = leases per process (log scale); `lines` is a list of
    (label, impl, dashed, [(count, value, fits)]); a hollow dot marks a size that did not fit."""
    width, height, left, right, top, bottom = 760, 380, 70, 230, 40, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [(n, v, fit) for *_, pts in lines for n, v, fit in pts if not log_y or v > 0]
    out = svg_open(width, height)
    out.append(f'<text x="{left}" y="22" font-weight="bold">{html.escape(title)}</text>')
    if not points:
        out.append(f'<text x="{left}" y="{top + 40}">nothing measured</text></svg>')
        return "\n".join(out) + "\n"
    sizes = sorted({n for n, _, _ in points})
    x_lo, x_hi = math.log10(sizes[0]) - 0.2, math.log10(sizes[-1]) + 0.2

    def x_of(n):
        return left + (math.log10(n) - x_lo) / (x_hi - x_lo) * plot_w

    ys = [v for _, v, _ in points]
    if log_y:
        lo, hi = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
        hi = max(hi, lo + 1)
        steps = (1, 2, 5) if hi - lo <= 3 else (1,)
        ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in steps if m * 10.0**e <= 10.0**hi]

        def y_of(v, lo=lo, hi=hi):
            return top + plot_h - (math.log10(v) - lo) / (hi - lo) * plot_h
    else:
        y_lo = min(0.0, -nice_ceiling(-min(ys))) if min(ys) < 0 else 0.0
        y_hi = nice_ceiling(max(ys)) if max(ys) > 0 else 1.0
        ticks = [y_lo + (y_hi - y_lo) * i / 5 for i in range(6)]

        def y_of(v, lo=y_lo, hi=y_hi):
            return top + plot_h - (v - lo) / (hi - lo) * plot_h

    for t in ticks:
        y = y_of(t)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{t:g}</text>'
        )
    for n in sizes:
        x = x_of(n)
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#e5e5e5"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#444">'
            f"{n:,}</text>"
        )
    out.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle" fill="#444">'
        "leases per process (3 processes), log scale</text>"
    )
    out.append(
        f'<text x="16" y="{top + plot_h / 2:.1f}" text-anchor="middle" fill="#444" '
        f'transform="rotate(-90 16 {top + plot_h / 2:.1f})">'
        f"{html.escape(unit + (', log scale' if log_y else ''))}</text>"
    )
    for i, (label, impl, dashed, pts) in enumerate(lines):
        pts = [(n, v, fit) for n, v, fit in pts if not log_y or v > 0]
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        if len(pts) > 1:
            path = " ".join(f"{x_of(n):.1f},{y_of(v):.1f}" for n, v, _ in pts)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{COLORS[impl]}" '
                f'stroke-width="2"{dash}/>'
            )
        for n, v, fit in pts:
            fill = COLORS[impl] if fit else "white"
            out.append(
                f'<circle cx="{x_of(n):.1f}" cy="{y_of(v):.1f}" r="4" fill="{fill}" '
                f'stroke="{COLORS[impl]}" stroke-width="1.5"/>'
            )
        ly = top + 10 + i * 20
        lx = left + plot_w + 16
        out.append(
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 28}" y2="{ly}" stroke="{COLORS[impl]}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{lx + 36}" y="{ly + 4}">{html.escape(label)}</text>')
    out.append(
        f'<text x="{left + plot_w + 16}" y="{top + 10 + len(lines) * 20 + 10}" fill="#666" '
        'font-size="10">hollow: the size did not fit</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# chart file -> the figures of CURVE_FIGURES drawn on it, as (key, label suffix, dashed)
CURVE_CHARTS = {
    "curve-convergence.svg": [("converged", "", False)],
    "curve-rss.svg": [("rss_max", ", largest", False), ("rss_mean", ", mean", True)],
    "curve-memory-per-lease.svg": [("per_lease", "", False)],
    "curve-cpu.svg": [("cpu_mean", ", mean", False), ("cpu_max", ", largest", True)],
    "curve-control-plane-cpu.svg": [("apiserver", ": kube-apiserver", False),
                                    ("etcd", ": etcd", True)],
    "curve-requests.svg": [("requests", "", False)],
}  # fmt: skip


def curve_svgs(sc):
    """{file name: (title, SVG)} for figure 4's charts, both implementations on each."""
    values = {impl: curve_figure_values(sc, impl) for impl in (OURS, GO)}
    fits = {impl: {p["count"]: p.get("fits", False) for p in sc[impl]} for impl in (OURS, GO)}
    figures = {key: (what, unit, log_y) for key, what, _, _, unit, log_y in CURVE_FIGURES}
    charts = {}
    for chart, keys in CURVE_CHARTS.items():
        what, unit, log_y = figures[keys[0][0]]
        lines = [
            (
                f"{impl}{suffix}",
                impl,
                dashed,
                [(n, v, fits[impl][n]) for n, v in sorted(values[impl].get(key, {}).items())
                 if v is not None],
            )
            for impl in (OURS, GO)
            for key, suffix, dashed in keys
        ]  # fmt: skip
        title = what if len(keys) == 1 else what.split(",")[0].split(" (")[0]
        if chart == "curve-control-plane-cpu.svg":
            title = "control-plane CPU (% of one core)"
        charts[chart] = (title, curve_svg(title[:1].upper() + title[1:], unit, lines, log_y))
    return charts


# ---------------------------------------------------------------------------------------------


FIGURES = ("graceful", "kill", "steady", "neighbours", "scale")


def sizes_list(text):
    return [int(n) for n in text.split(",") if n]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", required=True, help="the directory tests/control-plane/build.sh printed")
    parser.add_argument("--quick", action="store_true", help="tiny runs, to debug this script")
    parser.add_argument("--graceful-trials", type=int, default=30)
    parser.add_argument("--kill-trials", type=int, default=15)
    parser.add_argument("--windows", type=int, default=3, help="steady-state windows per fleet")
    parser.add_argument("--window", type=float, default=40.0, help="seconds per steady-state window")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--baseline-windows", type=int, default=2,
                        help="windows of the API server alone before figure 3")  # fmt: skip
    parser.add_argument("--scale-sizes", type=sizes_list, default=[10, 100, 1000, 5000],
                        help="leases per process along the cost curve, comma-separated")  # fmt: skip
    parser.add_argument("--scale-leases", type=int, default=1000,
                        help="the size the scale rows show (added to --scale-sizes)")  # fmt: skip
    parser.add_argument("--scale-windows", type=int, default=3)
    parser.add_argument("--scale-window", type=float, default=20.0)
    parser.add_argument("--converge-timeout", type=float, default=180.0)
    parser.add_argument("--neighbours-leases", type=int, default=10,
                        help="leases of the measured process in figure 6")  # fmt: skip
    parser.add_argument("--neighbours-busy", type=int, default=1000,
                        help="leases the neighbour renews in figure 6")  # fmt: skip
    parser.add_argument("--neighbours-windows", type=int, default=3)
    parser.add_argument("--neighbours-window", type=float, default=40.0)
    parser.add_argument("--only", default=",".join(FIGURES),
                        help="comma-separated subset of the figures ("
                        + ", ".join(FIGURES) + "); writes no report")  # fmt: skip
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    parser.add_argument("--report-from", metavar="JSON",
                        help="only rewrite the report from a run's target/bench/last-run.json")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.graceful_trials, args.kill_trials = 3, 1
        args.windows, args.window, args.warmup, args.baseline_windows = 1, 10.0, 3.0, 1
        args.scale_leases, args.scale_windows, args.scale_window = 50, 1, 5.0
        args.scale_sizes = [10, 50]
        args.converge_timeout = 60.0
        args.neighbours_busy, args.neighbours_windows, args.neighbours_window = 200, 1, 10.0
        if args.out == str(REPO / "docs" / "benchmarks.md"):
            args.out = str(WORK / "quick" / "benchmarks.md")
    args.scale_sizes = sorted(set(args.scale_sizes) | {args.scale_leases})
    run_file = WORK / ("quick" if args.quick else "") / "last-run.json"

    if args.report_from:
        data = json.loads(Path(args.report_from).read_text())
        for impl in (OURS, GO):
            data["kill"][impl] = [tuple(x) for x in data["kill"][impl]]
        if data.get("scale") and "sizes" not in data["scale"]:
            # a run from before the cost curve: its one scale point
            old = data["scale"]
            data["scale"] = {"sizes": [old[OURS]["count"]]}
            for impl in (OURS, GO):
                point = dict(old[impl], fits=True, stopped_by=None)
                point["rss_mean_mib"] = statistics.mean(point["rss_mib"].values())
                point.setdefault("throttled", 0)
                data["scale"][impl] = [point]
        data["args"].setdefault("scale_sizes", data["scale"]["sizes"] if data.get("scale") else [])
        for key in ("graceful_trials", "kill_trials", "windows", "window", "warmup",
                    "baseline_windows", "scale_leases", "scale_windows", "scale_window",
                    "converge_timeout", "quick", "scale_sizes", "neighbours_leases",
                    "neighbours_busy", "neighbours_windows", "neighbours_window"):  # fmt: skip
            setattr(args, key, data["args"].get(key, getattr(args, key)))
        commands = Commands(args.bin_dir, "", need_binaries="versions" not in data)
        out = Path(args.out)
        write_report(
            out, out.parent / "benchmarks", data, commands, args,
            datetime.datetime.fromisoformat(data["started_at"]), data["elapsed_s"],
        )  # fmt: skip
        log(f"rewrote {out} from {args.report_from}")
        return

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    state = os.environ.get("LEADER_TEST_CONTROL_PLANE")
    if not state:
        sys.exit("bench: LEADER_TEST_CONTROL_PLANE is not set; run me through `make bench`")
    info = json.loads((Path(state) / "control-plane.json").read_text())
    api = Api(info)
    commands = Commands(args.bin_dir, info["admin_kubeconfig"])
    started_at = datetime.datetime.now(datetime.timezone.utc)
    t0 = monotonic()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    busy = command_output(["pgrep", "-f", "toxiproxy"])
    if os.getloadavg()[0] > 1.0 or busy:
        log(f"warning: the machine is not quiet (load {load}); figures will be noisy")
    only = set(args.only.split(","))
    if only - set(FIGURES):
        sys.exit(f"bench: --only takes {', '.join(FIGURES)}")
    # What was measured, recorded now: `--report-from` may re-render the report at a later commit.
    data = {"load_at_start": load, "loads": {}, "versions": versions(commands)}

    def note_load(figure):
        data["loads"][figure] = f"{os.getloadavg()[0]:.2f}"
        others = command_output(["pgrep", "-f", "toxiproxy|deps/cluster-"])
        if others:
            data["loads"][figure] += " (fault campaign running)"

    note_load("before figure 1")
    data["graceful"] = graceful_failover(api, commands, args.graceful_trials) if "graceful" in only else {OURS: [], GO: []}
    note_load("after figure 1")
    data["kill"] = kill_failover(api, commands, args.kill_trials) if "kill" in only else {OURS: [], GO: []}
    note_load("after figure 2")
    data["steady"] = (
        steady_state(api, commands, args.windows, args.window, args.warmup, args.baseline_windows)
        if "steady" in only else None
    )  # fmt: skip
    note_load("after figures 3 and 5")
    data["neighbours"] = (
        neighbours(api, commands, args.neighbours_leases, args.neighbours_busy,
                   args.neighbours_windows, args.neighbours_window, args.warmup,
                   args.converge_timeout)
        if "neighbours" in only else None
    )  # fmt: skip
    note_load("after figure 6")
    # last: its largest size can leave the API server overloaded
    baseline = data["steady"]["baseline"] if data["steady"] else None
    data["scale"] = (
        scale(api, commands, args.scale_sizes, 3, args.scale_windows, args.scale_window,
              args.warmup, args.converge_timeout, baseline)
        if "scale" in only else None
    )  # fmt: skip
    note_load("after figure 4")
    data["started_at"] = started_at.isoformat()
    data["elapsed_s"] = monotonic() - t0
    data["args"] = vars(args)
    run_file.parent.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(data, indent=1, default=str))
    if only != set(FIGURES):
        log(f"partial run (--only); raw data in {run_file}, no report written")
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    svg_dir = out.parent / "benchmarks"
    write_report(out, svg_dir, data, commands, args, started_at, data["elapsed_s"])
    log(f"wrote {out} and the plots in {svg_dir} in {(monotonic() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
