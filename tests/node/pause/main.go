// Command pause is the test node's sandbox ("pause") image: the first process
// of every pod, which holds the pod's namespaces. It reaps the children that
// are re-parented to it and exits with status 0 on SIGTERM or SIGINT.
//
// Built statically (CGO_ENABLED=0) by tests/node/build.sh and packed into an
// image by tests/node/images.py, so no image is ever pulled.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not running as PID 1")
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Reap every child that has exited; signals may have merged.
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
