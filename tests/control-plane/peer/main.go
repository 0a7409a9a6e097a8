// Command peer is a leader-election candidate built on client-go's
// tools/leaderelection package with a Lease lock: the program a Go user runs.
// The interop tests run it next to examples/election.rs on the same Lease.
//
// Usage:
//
//	peer --kubeconfig FILE --id NAME --lease-lock-name LEASE --lease-lock-namespace NS \
//	    [--lease-duration 15s] [--renew-deadline 10s] [--retry-period 2s] \
//	    [--work-interval 500ms] [--timestamps] [--events=false] [--lease-labels k=v,...]
//
// It prints exactly the lines examples/election.rs prints, so one test
// harness drives both:
//
//	<id>: leading <lease> (fencing token <leaseTransitions at acquisition>)
//	<id>: working on <lease> (fencing token <token>)   with --work-interval
//	<id>: stopped leading <lease>
//	<id>: new leader of <lease>: <holder>
//	<id>: shutting down
//	<id>: released
//
// With --work-interval, the leader does one unit of work (a "working" line)
// per interval, checking before each one that the leadership context is not
// done: client-go offers no other check, and that context ends only when the
// elector's renew loop notices that the lease is lost, not at a deadline
// derived from the clock. The fault campaign (tests/cluster/faults.rs) shows
// what that means for a paused leader.
//
// With --timestamps, each line starts with "[<seconds>.<nanoseconds>] ", the
// machine's CLOCK_MONOTONIC when it was printed, the clock the Rust example
// stamps its lines with too, so that the lines of different processes can be
// put on one time line.
//
// The lease lock records client-go's leader-election Events ("<id> became leader",
// "<id> stopped leading", reason LeaderElection) through a core/v1 event
// recorder, as Kubernetes' own components do, unless --events=false. With
// --lease-labels, the lock puts those labels on the Lease whenever it writes it
// (client-go's NewWithLabels).
//
// SIGINT or SIGTERM cancels the election context; with ReleaseOnCancel the
// lease is released before the program exits with status 0. A lost lease
// sends the candidate back to following, as the Rust example does.
//
// klog writes errors only (to stderr); the klog flags (-v, -stderrthreshold)
// are accepted to see more.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

type options struct {
	kubeconfig    string
	id            string
	lease         string
	namespace     string
	leaseDuration time.Duration
	renewDeadline time.Duration
	retryPeriod   time.Duration
	workInterval  time.Duration
	timestamps    bool
	events        bool
	labels        map[string]string
}

// stamp is set once by main from --timestamps, before any goroutine prints.
var stamp bool

// say prints one line of the output the tests read, prefixed with the
// CLOCK_MONOTONIC time under --timestamps. Each line is a single write, so
// lines of concurrent goroutines do not interleave.
func say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if stamp {
		var now unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err == nil {
			line = fmt.Sprintf("[%d.%09d] %s", now.Sec, now.Nsec, line)
		}
	}
	fmt.Print(line + "\n")
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "peer: %v\n", err)
		os.Exit(2)
	}
	stamp = opts.timestamps
	if err := run(opts); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", opts.id, err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var opts options
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	fs.StringVar(&opts.kubeconfig, "kubeconfig", "", "kubeconfig file (in-cluster configuration when empty)")
	fs.StringVar(&opts.id, "id", "", "this candidate's identity (the lease's holderIdentity); the host name when empty")
	fs.StringVar(&opts.lease, "lease-lock-name", "my-leader-election-lock", "name of the Lease")
	fs.StringVar(&opts.namespace, "lease-lock-namespace", "default", "namespace of the Lease")
	fs.DurationVar(&opts.leaseDuration, "lease-duration", 15*time.Second, "how long followers wait after the last renew before taking over")
	fs.DurationVar(&opts.renewDeadline, "renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it stops leading")
	fs.DurationVar(&opts.retryPeriod, "retry-period", 2*time.Second, "interval between attempts to acquire or renew")
	fs.DurationVar(&opts.workInterval, "work-interval", 0, "while leading, do one unit of work per interval (0: none)")
	fs.BoolVar(&opts.timestamps, "timestamps", false, "start each line with the CLOCK_MONOTONIC time")
	fs.BoolVar(&opts.events, "events", true, "record leader-election Events on the Lease")
	labels := fs.String("lease-labels", "", "labels to put on the Lease, as key=value,key=value")

	// Quiet by default: only errors reach stderr, unless -stderrthreshold says otherwise.
	klog.InitFlags(fs)
	for name, value := range map[string]string{
		"logtostderr":                      "true",
		"legacy_stderr_threshold_behavior": "false",
		"stderrthreshold":                  "ERROR",
	} {
		if err := fs.Set(name, value); err != nil {
			return opts, fmt.Errorf("setting klog flag %s: %w", name, err)
		}
	}
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *labels != "" {
		opts.labels = map[string]string{}
		for _, pair := range strings.Split(*labels, ",") {
			key, value, ok := strings.Cut(pair, "=")
			if !ok {
				return opts, fmt.Errorf("--lease-labels: %q is not key=value", pair)
			}
			opts.labels[key] = value
		}
	}
	if opts.id == "" {
		host, err := os.Hostname()
		if err != nil {
			return opts, fmt.Errorf("no --id and no host name: %w", err)
		}
		opts.id = host
	}
	return opts, nil
}

func run(opts options) error {
	config, err := clientcmd.BuildConfigFromFlags("", opts.kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return fmt.Errorf("creating the client: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		say("%s: shutting down", opts.id)
		cancel()
	}()

	var recorder resourcelock.EventRecorder
	if opts.events {
		// Not the election's context: SIGTERM cancels that one before "stopped leading".
		broadcaster := record.NewBroadcaster(record.WithContext(context.Background()))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
		// The recorder sends from a goroutine of its own, and Shutdown does not wait for what
		// it is still sending: give the last events ("stopped leading") a moment to go out.
		defer func() {
			time.Sleep(time.Second)
			broadcaster.Shutdown()
		}()
		recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "leader-election-peer"})
	}

	// A lost lease (renew deadline missed, lease taken) ends Run; follow again
	// until we are told to stop.
	for ctx.Err() == nil {
		if err := elect(ctx, client, recorder, opts); err != nil {
			return err
		}
	}
	say("%s: released", opts.id)
	return nil
}

// elect runs one leader election until ctx is cancelled or the lease is lost,
// and returns once the leader work has stopped and (with ReleaseOnCancel) the
// lease has been released.
func elect(ctx context.Context, client kubernetes.Interface, recorder resourcelock.EventRecorder, opts options) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta: metav1.ObjectMeta{Name: opts.lease, Namespace: opts.namespace},
		Client:    client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{
			Identity:      opts.id,
			EventRecorder: recorder,
		},
		Labels: opts.labels,
	}

	// Run starts OnStartedLeading in a goroutine of its own and does not wait
	// for it. Track it so that "stopped leading" is printed before elect
	// returns (and so before "released"): a goroutine that starts after Run
	// returned does no work.
	var (
		mu       sync.Mutex
		finished bool
		work     sync.WaitGroup
	)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            opts.lease,
		LeaseDuration:   opts.leaseDuration,
		RenewDeadline:   opts.renewDeadline,
		RetryPeriod:     opts.retryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leading context.Context) {
				mu.Lock()
				if finished {
					mu.Unlock()
					return
				}
				work.Add(1)
				mu.Unlock()
				defer work.Done()
				lead(leading, client, opts)
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(holder string) {
				// Called with "" when the lease is released; report holders only.
				if holder != "" && holder != opts.id {
					say("%s: new leader of %s: %s", opts.id, opts.lease, holder)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	elector.Run(ctx)
	mu.Lock()
	finished = true
	mu.Unlock()
	work.Wait()
	return nil
}

// lead is the leader's work: announce leadership with its fencing token, then
// work (with --work-interval) or wait until the leadership context ends.
func lead(ctx context.Context, client kubernetes.Interface, opts options) {
	token, err := fencingToken(ctx, client, opts)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "%s: reading the fencing token: %v\n", opts.id, err)
		}
		<-ctx.Done()
		return
	}
	say("%s: leading %s (fencing token %d)", opts.id, opts.lease, token)
	if opts.workInterval > 0 {
		work(ctx, opts, token)
	}
	<-ctx.Done()
	say("%s: stopped leading %s", opts.id, opts.lease)
}

// work does one unit of work per --work-interval while ctx, client-go's
// leadership context, is not done: the only check client-go offers before a
// unit of work.
func work(ctx context.Context, opts options, token int32) {
	ticker := time.NewTicker(opts.workInterval)
	defer ticker.Stop()
	for ctx.Err() == nil {
		say("%s: working on %s (fencing token %d)", opts.id, opts.lease, token)
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
}

// fencingToken reads the lease's leaseTransitions while we hold it: the value
// our elector wrote on acquisition, which renews keep. The elector's lock
// object is not safe to share, so this reads through the clientset.
func fencingToken(ctx context.Context, client kubernetes.Interface, opts options) (int32, error) {
	leases := client.CoordinationV1().Leases(opts.namespace)
	for {
		lease, err := leases.Get(ctx, opts.lease, metav1.GetOptions{})
		if err == nil {
			spec := lease.Spec
			if spec.HolderIdentity != nil && *spec.HolderIdentity == opts.id {
				if spec.LeaseTransitions == nil {
					return 0, nil
				}
				return *spec.LeaseTransitions, nil
			}
			err = fmt.Errorf("the lease names %q as holder", stringOr(spec.HolderIdentity, ""))
		}
		klog.FromContext(ctx).V(2).Info("Reading the fencing token failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func stringOr(s *string, fallback string) string {
	if s == nil {
		return fallback
	}
	return *s
}
