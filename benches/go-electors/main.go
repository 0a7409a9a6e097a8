// Command go-electors runs many client-go leader electors (tools/leaderelection
// with a LeaseLock) in one process, all sharing one clientset: the Go
// counterpart of `examples/election.rs --lease-lock-name a,b,c,...` for the
// scale figure of `make bench` (benches/bench.py).
//
// Usage:
//
//	go-electors --kubeconfig FILE --id NAME --lease-lock-namespace NS \
//	    --lease-lock-name PREFIX --count N [--lease-duration 15s] \
//	    [--renew-deadline 10s] [--retry-period 2s] [--qps -1]
//
// Elector i campaigns for the Lease PREFIX-i (i from 0 to N-1) with
// ReleaseOnCancel. The clientset's client-side rate limiter is off by default
// (--qps -1): client-go's default of 5 requests per second, shared by every
// elector of the process, could not keep 1,000 leases renewed.
//
// Output: "<id>: leading <lease>" when an elector starts leading, and
// "<id>: released" after SIGINT or SIGTERM once every elector has returned.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

func main() {
	var (
		kubeconfig, id, namespace, prefix string
		count                             int
		qps                               float64
		leaseDuration, renewDeadline      time.Duration
		retryPeriod                       time.Duration
	)
	fs := flag.NewFlagSet("go-electors", flag.ExitOnError)
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file")
	fs.StringVar(&id, "id", "", "identity of this process (holderIdentity of its leases)")
	fs.StringVar(&namespace, "lease-lock-namespace", "default", "namespace of the Leases")
	fs.StringVar(&prefix, "lease-lock-name", "bench", "Lease names are PREFIX-0 ... PREFIX-(count-1)")
	fs.IntVar(&count, "count", 1000, "number of electors (one Lease each)")
	fs.Float64Var(&qps, "qps", -1, "client-side rate limit of the shared clientset (negative: none)")
	fs.DurationVar(&leaseDuration, "lease-duration", 15*time.Second, "lease duration")
	fs.DurationVar(&renewDeadline, "renew-deadline", 10*time.Second, "renew deadline")
	fs.DurationVar(&retryPeriod, "retry-period", 2*time.Second, "retry period")
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "true")
	_ = fs.Set("legacy_stderr_threshold_behavior", "false")
	_ = fs.Set("stderrthreshold", "ERROR")
	_ = fs.Parse(os.Args[1:])
	if id == "" {
		fmt.Fprintln(os.Stderr, "go-electors: --id is required")
		os.Exit(2)
	}

	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: loading kubeconfig: %v\n", id, err)
		os.Exit(1)
	}
	config.QPS = float32(qps)
	if qps > 0 {
		config.Burst = int(2 * qps)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: creating the client: %v\n", id, err)
		os.Exit(1)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	var electors sync.WaitGroup
	for i := range count {
		name := fmt.Sprintf("%s-%d", prefix, i)
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Name: name, Namespace: namespace},
				Client:     client.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: id},
			},
			Name:            name,
			LeaseDuration:   leaseDuration,
			RenewDeadline:   renewDeadline,
			RetryPeriod:     retryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { fmt.Printf("%s: leading %s\n", id, name) },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", id, err)
			os.Exit(1)
		}
		electors.Add(1)
		go func() {
			defer electors.Done()
			// Run returns when the lease is lost; campaign again until told to stop.
			for ctx.Err() == nil {
				elector.Run(ctx)
			}
		}()
	}
	<-ctx.Done()
	electors.Wait()
	fmt.Printf("%s: released\n", id)
}
