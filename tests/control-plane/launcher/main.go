// Command launcher runs a private, throwaway Kubernetes control plane (etcd and
// kube-apiserver listening on 127.0.0.1) for the integration tests, and removes
// every trace of it afterwards.
//
// Usage:
//
//	launcher run [--bin-dir DIR] [--node DIR --images DIR] -- CMD [ARGS...]
//	launcher serve [--bin-dir DIR] [--node DIR --images DIR] [--stop-on-stdin-eof]
//
// "run" starts the control plane, runs CMD with LEADER_TEST_CONTROL_PLANE set
// to the state directory (control-plane.json, kubeconfigs, certificates, logs),
// tears everything down when CMD exits and exits with CMD's status. SIGINT and
// SIGTERM are forwarded to CMD.
//
// "serve" starts the control plane, prints shell exports for
// LEADER_TEST_CONTROL_PLANE and KUBECONFIG on stdout and keeps it running until
// SIGINT or SIGTERM, for running the tests by hand. With --stop-on-stdin-eof it
// also stops when its standard input reaches end of file: a test that starts a
// private control plane keeps the write end of a pipe open, so the control
// plane goes away with the test however the test ends (even by SIGKILL).
//
// In both modes the launcher restarts its own servers on request, on the same
// ports and the same etcd data, for fault-injection tests: SIGUSR1 restarts
// kube-apiserver, SIGUSR2 restarts etcd. Each restart waits for readiness
// again, is logged, and rewrites control-plane.json with the new process ids
// and the count of restarts so far (launcher_pid there says where to send the
// signals). Requests that arrive during a restart are served one after the
// other.
//
// --bin-dir names the directory holding the etcd and kube-apiserver
// executables; it defaults to the launcher's own directory.
//
// --node also runs a test node (kubelet, containerd, kube-controller-manager
// and kube-scheduler) in a network namespace of its own, with the control
// plane and CMD in the same namespace; see node.go. --node names the
// directory tests/node/build.sh prints, --images the one
// tests/node/images.py prints. The node is described in node.json in the
// state directory.
//
// etcd and kube-apiserver get a parent-death signal, so they die with the
// launcher even if it is killed with SIGKILL; the next launcher removes state
// directories left behind that way.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	stateEnv     = "LEADER_TEST_CONTROL_PLANE"
	etcdTimeout  = 30 * time.Second
	readyTimeout = 90 * time.Second
	stopTimeout  = 10 * time.Second
	pollInterval = 100 * time.Millisecond
	logTailLines = 40
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "control-plane: "+format+"\n", args...)
}

func main() {
	// Pdeathsig fires when the *thread* that forked a child exits. All
	// children are started from the main goroutine; pinning it to the main
	// thread, which lives as long as the process, makes the signal mean
	// "the launcher died".
	runtime.LockOSThread()
	os.Exit(launch(os.Args[1:]))
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: launcher run [--bin-dir DIR] [--node DIR --images DIR] -- CMD [ARGS...]\n"+
		"       launcher serve [--bin-dir DIR] [--node DIR --images DIR] [--stop-on-stdin-eof]")
}

// launch parses the command line, runs the control plane and returns the
// process exit code.
func launch(args []string) int {
	if len(args) == 0 || (args[0] != "run" && args[0] != "serve") {
		usage()
		return 2
	}
	mode := args[0]
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	binDir := fs.String("bin-dir", defaultBinDir(), "directory holding the etcd and kube-apiserver executables")
	nodeDir := fs.String("node", "", "also run a test node from this directory (tests/node/build.sh prints it)")
	imagesDir := fs.String("images", "", "with --node: the images to import (tests/node/images.py prints the directory)")
	var stopOnEOF *bool
	if mode == "serve" {
		stopOnEOF = fs.Bool("stop-on-stdin-eof", false, "also stop when standard input reaches end of file")
	}
	fs.Usage = usage
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	command := fs.Args()
	if (mode == "run") != (len(command) > 0) {
		usage()
		return 2
	}
	if mode == "run" {
		// Fail before spending seconds on a control plane nobody will use.
		if _, err := exec.LookPath(command[0]); err != nil {
			logf("%v", err)
			return 127
		}
	}
	if *nodeDir != "" {
		// Returns once the launcher runs again inside the node's network
		// namespace.
		if err := enterNodeNetns(); err != nil {
			logf("%v", err)
			return 1
		}
	}

	// Catch signals before anything exists, so that no interruption can
	// leave processes or files behind.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	// Restart requests wait in their own queue until the control plane is up.
	restarts := make(chan os.Signal, 16)
	signal.Notify(restarts, syscall.SIGUSR1, syscall.SIGUSR2)

	var n *node
	if *nodeDir != "" {
		var err error
		if n, err = newNode(*nodeDir, *imagesDir); err != nil {
			logf("%v", err)
			deleteNetns(os.Getenv(netnsEnv))
			return 1
		}
	}
	cp, err := newControlPlane(*binDir, n, sigs, restarts)
	if err != nil {
		logf("%v", err)
		if n != nil {
			n.cleanUp()
		}
		return 1
	}
	// Teardown that leaves something behind fails a run that passed.
	stop := func(code int) int {
		if !cp.stop() && code == 0 {
			code = 1
		}
		return code
	}
	if err := cp.start(); err != nil {
		var intr interrupted
		if errors.As(err, &intr) {
			logf("received %v during startup, stopping", intr.sig)
			return stop(128 + int(intr.sig.(syscall.Signal)))
		}
		logf("%v", err)
		return stop(1)
	}
	if mode == "run" {
		return stop(cp.run(command))
	}
	var stdinClosed <-chan struct{}
	if *stopOnEOF {
		stdinClosed = closedOnEOF(os.Stdin)
	}
	return stop(cp.serve(stdinClosed))
}

// closedOnEOF returns a channel that is closed once r reaches end of file (or
// fails).
func closedOnEOF(r io.Reader) <-chan struct{} {
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, r)
		close(closed)
	}()
	return closed
}

// defaultBinDir is the directory of the launcher executable.
func defaultBinDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "."
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Dir(exe)
}

// interrupted is returned when a signal arrives during startup.
type interrupted struct{ sig os.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

// server is a running etcd or kube-apiserver process.
type server struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	err     error         // result of Wait, valid once done is closed
}

// startServer starts bin in its own process group with output going to
// logPath. It must be called from the main goroutine (see main).
func startServer(name, bin, logPath string, args ...string) (*server, error) {
	return startServerEnv(name, bin, logPath, nil, args...)
}

// startServerEnv is startServer with env added to the launcher's environment.
func startServerEnv(name, bin, logPath string, env []string, args ...string) (*server, error) {
	// Append: a restarted server keeps the log of its predecessor.
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child keeps its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	// Own process group: a terminal's Ctrl+C reaches only the launcher and
	// the test command, and the launcher decides the shutdown order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	s := &server{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the server's process group, and SIGKILL if it has not
// exited after stopTimeout.
func (s *server) stop() {
	if s == nil || s.exited() {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
		return
	case <-time.After(stopTimeout):
	}
	logf("%s did not stop within %v; killing it", s.name, stopTimeout)
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// printLogTail copies the last lines of the server's log to stderr.
func (s *server) printLogTail() {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	logf("last %d lines of %s:", len(lines), s.logPath)
	fmt.Fprintln(os.Stderr, strings.Join(lines, "\n"))
}

// controlPlane is one private etcd + kube-apiserver and its state directory.
type controlPlane struct {
	sigs                    <-chan os.Signal
	restarts                <-chan os.Signal // SIGUSR1: kube-apiserver, SIGUSR2: etcd
	apiserverRestarts       int
	etcdRestarts            int
	state                   string
	etcdBin, apiserverBin   string
	etcdPort, peerPort      int
	apiPort                 int
	adminToken, unprivToken string
	caPool                  *x509.CertPool
	ca                      *x509.Certificate
	etcd, apiserver         *server
	client                  *http.Client
	node                    *node // nil without --node
}

// newControlPlane checks the binaries, removes stale state directories and
// creates a new one. With a node, the state directory is under
// leader-test-node instead of leader-control-plane: launchers without node
// support remove stale directories there without unmounting anything first.
func newControlPlane(binDir string, n *node, sigs, restarts <-chan os.Signal) (*controlPlane, error) {
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{
		sigs:         sigs,
		restarts:     restarts,
		etcdBin:      filepath.Join(binDir, "etcd"),
		apiserverBin: filepath.Join(binDir, "kube-apiserver"),
		node:         n,
	}
	if n != nil {
		n.cp = cp
	}
	for _, bin := range []string{cp.etcdBin, cp.apiserverBin} {
		if info, err := os.Stat(bin); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("no executable %s (set --bin-dir)", bin)
		}
	}
	parentName := "leader-control-plane"
	if n != nil {
		parentName = "leader-test-node" // reaped by reapStaleNodes
	}
	parent, err := filepath.Abs(filepath.Join(os.TempDir(), parentName))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	if n == nil {
		reapStale(parent)
	}
	if cp.state, err = os.MkdirTemp(parent, "run-*"); err != nil {
		return nil, err
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	return cp, os.WriteFile(cp.path("launcher.pid"), pid, 0o644)
}

// reapStale removes run-* directories whose launcher no longer exists. Their
// servers died with the launcher (Pdeathsig).
func reapStale(parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, "run-*"))
	for _, dir := range dirs {
		if !launcherAlive(dir) {
			logf("removing stale state directory %s", dir)
			_ = os.RemoveAll(dir)
		}
	}
}

func launcherAlive(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "launcher.pid"))
	if err != nil {
		// A launcher writes its pid right after creating the directory:
		// leave brand-new directories alone.
		info, err := os.Stat(dir)
		return err == nil && time.Since(info.ModTime()) < time.Minute
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	return err == nil && pid > 0 && syscall.Kill(pid, 0) != syscall.ESRCH
}

func (cp *controlPlane) path(name string) string { return filepath.Join(cp.state, name) }

func (cp *controlPlane) serverURL() string { return fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort) }

func (cp *controlPlane) etcdURL() string { return fmt.Sprintf("http://127.0.0.1:%d", cp.etcdPort) }

// start writes credentials, starts etcd and kube-apiserver, waits until both
// are ready and then writes control-plane.json.
func (cp *controlPlane) start() error {
	began := time.Now()
	ports, err := freePorts(3)
	if err != nil {
		return fmt.Errorf("picking free ports: %w", err)
	}
	cp.etcdPort, cp.peerPort, cp.apiPort = ports[0], ports[1], ports[2]
	if err := cp.writeCredentials(); err != nil {
		return fmt.Errorf("writing credentials: %w", err)
	}

	if err := cp.startEtcd(); err != nil {
		return err
	}
	if err := cp.startAPIServer(); err != nil {
		return err
	}
	if err := cp.writeInfo(); err != nil {
		return fmt.Errorf("writing control-plane.json: %w", err)
	}
	logf("ready in %.1fs: kube-apiserver %s, etcd %s (state %s)",
		time.Since(began).Seconds(), cp.serverURL(), cp.etcdURL(), cp.state)
	if cp.node != nil {
		return cp.node.start()
	}
	return nil
}

// startEtcd starts etcd on the control plane's ports and data directory and
// waits until it is healthy.
func (cp *controlPlane) startEtcd() error {
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", cp.peerPort)
	var err error
	cp.etcd, err = startServer("etcd", cp.etcdBin, cp.path("etcd.log"),
		"--name", "default",
		"--data-dir", cp.path("etcd"),
		"--listen-client-urls", cp.etcdURL(),
		"--advertise-client-urls", cp.etcdURL(),
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		"--unsafe-no-fsync",
		"--log-level", "warn")
	if err != nil {
		return err
	}
	return cp.waitFor(cp.etcd, etcdTimeout, cp.etcdHealthy)
}

// startAPIServer starts kube-apiserver on the control plane's port and waits
// until it is ready.
func (cp *controlPlane) startAPIServer() error {
	bind, advertise, authorization := "127.0.0.1", "127.0.0.1", "RBAC"
	var nodeArgs []string
	if cp.node != nil {
		// Also on the node's address, for kubelet and the pods; the Node
		// authorizer for kubelet's own identity; a client certificate for
		// kubelet's API (logs, exec).
		bind, advertise, authorization = "0.0.0.0", nodeIP, "Node,RBAC"
		nodeArgs = []string{
			"--kubelet-client-certificate=" + cp.path("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + cp.path("apiserver-kubelet-client.key"),
			"--kubelet-preferred-address-types=InternalIP",
		}
	}
	var err error
	cp.apiserver, err = startServer("kube-apiserver", cp.apiserverBin, cp.path("kube-apiserver.log"),
		append([]string{
			"--etcd-servers=" + cp.etcdURL(),
			"--cert-dir=" + cp.path("certs"),
			"--tls-cert-file=" + cp.path("apiserver.crt"),
			"--tls-private-key-file=" + cp.path("apiserver.key"),
			"--secure-port=" + strconv.Itoa(cp.apiPort),
			"--bind-address=" + bind,
			"--advertise-address=" + advertise,
			"--service-cluster-ip-range=10.0.0.0/24",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + cp.path("sa.pub"),
			"--service-account-signing-key-file=" + cp.path("sa.key"),
			"--authorization-mode=" + authorization,
			"--token-auth-file=" + cp.path("tokens.csv"),
			"--endpoint-reconciler-type=none",
		}, nodeArgs...)...)
	if err != nil {
		return err
	}
	return cp.waitFor(cp.apiserver, readyTimeout, cp.apiserverReady())
}

// restart stops one server (SIGUSR1: kube-apiserver, SIGUSR2: etcd) and
// starts it again on the same ports and data, waits until it is ready and
// rewrites control-plane.json. It must be called from the main goroutine (see
// main). An interrupted error means SIGINT or SIGTERM arrived meanwhile.
func (cp *controlPlane) restart(request os.Signal) error {
	began := time.Now()
	var name string
	var err error
	switch request {
	case syscall.SIGUSR1:
		name = "kube-apiserver"
		logf("%v: restarting %s", request, name)
		cp.apiserver.stop()
		err = cp.startAPIServer()
		if err == nil {
			cp.apiserverRestarts++
		}
	case syscall.SIGUSR2:
		name = "etcd"
		logf("%v: restarting %s", request, name)
		cp.etcd.stop()
		err = cp.startEtcd()
		if err == nil {
			// kube-apiserver stayed up; it is ready again once it reaches etcd.
			err = cp.waitFor(cp.apiserver, readyTimeout, cp.apiserverReady())
		}
		if err == nil {
			cp.etcdRestarts++
		}
	default:
		return fmt.Errorf("no restart for %v", request)
	}
	if err != nil {
		return fmt.Errorf("restarting %s: %w", name, err)
	}
	if err := cp.writeInfo(); err != nil {
		return fmt.Errorf("writing control-plane.json: %w", err)
	}
	logf("restarted %s in %.1fs", name, time.Since(began).Seconds())
	return nil
}

// waitFor polls ready until it reports true. It fails, printing the relevant
// log, when timeout passes or a server exits, and returns interrupted when the
// launcher receives a signal.
func (cp *controlPlane) waitFor(s *server, timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ready() {
		for _, other := range cp.servers() {
			if other != nil && other.exited() {
				other.printLogTail()
				return fmt.Errorf("%s exited during startup: %v", other.name, other.err)
			}
		}
		if time.Now().After(deadline) {
			s.printLogTail()
			return fmt.Errorf("%s not ready after %v", s.name, timeout)
		}
		select {
		case sig := <-cp.sigs:
			return interrupted{sig}
		case <-time.After(pollInterval):
		}
	}
	return nil
}

// nodeExits delivers each node process that exits (none without a node).
// Read it only while the node is meant to run.
func (cp *controlPlane) nodeExits() <-chan *server {
	exits := make(chan *server)
	if cp.node != nil {
		for _, s := range cp.node.servers() {
			go func() {
				<-s.done
				exits <- s
			}()
		}
	}
	return exits
}

// servers are every process the launcher started, the node's included.
func (cp *controlPlane) servers() []*server {
	all := []*server{cp.etcd, cp.apiserver}
	if cp.node != nil {
		all = append(all, cp.node.servers()...)
	}
	return all
}

// apiClient is an HTTPS client for the API server that trusts only our CA.
func (cp *controlPlane) apiClient() *http.Client {
	if cp.client == nil {
		cp.client = &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cp.caPool}},
		}
	}
	return cp.client
}

func (cp *controlPlane) etcdHealthy() bool {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(cp.etcdURL() + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var health struct{ Health string }
	return json.NewDecoder(resp.Body).Decode(&health) == nil && health.Health == "true"
}

// apiserverReady returns a check that kube-apiserver's /readyz says "ok",
// trusting only our CA.
func (cp *controlPlane) apiserverReady() func() bool {
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: cp.caPool},
			DisableKeepAlives: true,
		},
	}
	return func() bool {
		req, err := http.NewRequest(http.MethodGet, cp.serverURL()+"/readyz", nil)
		if err != nil {
			return false
		}
		req.Header.Set("Authorization", "Bearer "+cp.adminToken)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return resp.StatusCode == http.StatusOK && string(body) == "ok"
	}
}

// stop shuts down the node's workloads and processes, kube-apiserver, then
// etcd, cleans up after the node and removes the state directory. It reports
// whether nothing was left behind.
func (cp *controlPlane) stop() bool {
	began := time.Now()
	if cp.node != nil {
		cp.node.stopWorkloads()
	}
	cp.apiserver.stop()
	cp.etcd.stop()
	var left []string
	if cp.node != nil {
		left = cp.node.cleanUp()
	}
	if hasMounts(cp.state) {
		left = append(left, "the state directory "+cp.state+" (mounts remain under it)")
	} else if err := os.RemoveAll(cp.state); err != nil {
		left = append(left, fmt.Sprintf("the state directory %s (%v)", cp.state, err))
	}
	for _, what := range left {
		logf("error: teardown left %s behind", what)
	}
	if cp.node != nil {
		logf("node: teardown took %.1fs", time.Since(began).Seconds())
	}
	return len(left) == 0
}

// run runs command against the ready control plane and returns its exit code.
func (cp *controlPlane) run(command []string) int {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), stateEnv+"="+cp.state)
	// Same process group as the launcher, so a terminal's Ctrl+C reaches
	// it directly; killed if the launcher dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf("%v", err)
		return 127
	}
	waited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(waited)
	}()
	etcdDone, apiserverDone := cp.etcd.done, cp.apiserver.done
	nodeExits := cp.nodeExits()
	for {
		select {
		case sig := <-cp.sigs:
			_ = cmd.Process.Signal(sig)
		case request := <-cp.restarts:
			if err := cp.restart(request); err != nil {
				var intr interrupted
				if errors.As(err, &intr) {
					_ = cmd.Process.Signal(intr.sig)
				} else {
					logf("warning: %v", err)
				}
			}
			etcdDone, apiserverDone = cp.etcd.done, cp.apiserver.done
		case <-waited:
			return exitCode(cmd.ProcessState)
		case <-etcdDone:
			logf("warning: etcd exited unexpectedly: %v (log: %s)", cp.etcd.err, cp.etcd.logPath)
			etcdDone = nil
		case <-apiserverDone:
			logf("warning: kube-apiserver exited unexpectedly: %v (log: %s)", cp.apiserver.err, cp.apiserver.logPath)
			apiserverDone = nil
		case s := <-nodeExits:
			logf("warning: %s exited unexpectedly: %v (log: %s)", s.name, s.err, s.logPath)
		}
	}
}

// exitCode follows the shell convention: 128+N for death by signal N.
func exitCode(state *os.ProcessState) int {
	if status, ok := state.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		return 128 + int(status.Signal())
	}
	return state.ExitCode()
}

// serve prints the environment for manual use and waits for a signal, or for
// stdinClosed to close when it is not nil.
func (cp *controlPlane) serve(stdinClosed <-chan struct{}) int {
	fmt.Printf("export %s=%s\nexport KUBECONFIG=%s\n", stateEnv, cp.state, cp.path("admin.kubeconfig"))
	if cp.node != nil {
		fmt.Printf("# The cluster is reachable inside its network namespace only, for example:\n"+
			"#   nsenter --net=%s kubectl get nodes\n", filepath.Join(netnsDir, cp.node.netns))
	}
	if stdinClosed != nil {
		logf("serving until SIGINT, SIGTERM or the end of standard input")
	} else {
		logf("serving until SIGINT or SIGTERM (Ctrl+C)")
	}
	nodeExits := cp.nodeExits()
	for {
		select {
		case sig := <-cp.sigs:
			logf("received %v, stopping", sig)
			return 0
		case <-stdinClosed:
			logf("standard input closed, stopping")
			return 0
		case request := <-cp.restarts:
			if err := cp.restart(request); err != nil {
				var intr interrupted
				if errors.As(err, &intr) {
					logf("received %v during a restart, stopping", intr.sig)
					return 0
				}
				logf("%v", err)
				return 1
			}
		case <-cp.etcd.done:
			logf("etcd exited unexpectedly: %v", cp.etcd.err)
			return 1
		case <-cp.apiserver.done:
			logf("kube-apiserver exited unexpectedly: %v", cp.apiserver.err)
			return 1
		case s := <-nodeExits:
			logf("%s exited unexpectedly: %v (log: %s)", s.name, s.err, s.logPath)
			return 1
		}
	}
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // hold all until the end so the ports differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeCredentials writes the CA, the serving certificate, the
// service-account key pair, the token file and both kubeconfigs.
func (cp *controlPlane) writeCredentials() error {
	ca, caKey, err := newCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "leader-test-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, nil)
	if err != nil {
		return err
	}
	addresses, names := []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}
	if cp.node != nil {
		addresses = append(addresses, nodeServingAddresses()...)
		names = append(names, "kubernetes", "kubernetes.default", "kubernetes.default.svc")
	}
	serving, servingKey, err := newCert(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		IPAddresses: addresses,
		DNSNames:    names,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	cp.ca = ca
	cp.caPool = x509.NewCertPool()
	cp.caPool.AddCert(ca)
	cp.adminToken, cp.unprivToken = rand.Text(), rand.Text()
	tokens := fmt.Sprintf("%s,leader-test-admin,leader-test-admin,\"system:masters\"\n"+
		"%s,leader-test-unprivileged,leader-test-unprivileged\n", cp.adminToken, cp.unprivToken)
	var nodeErr error
	if cp.node != nil {
		// kubelet's identity, as the Node authorizer expects it.
		cp.node.token = rand.Text()
		tokens += fmt.Sprintf("%s,system:node:%s,system:node:%s,\"system:nodes\"\n", cp.node.token, nodeIP, nodeIP)
		nodeErr = cp.nodeCredentials(ca, caKey)
	}

	return firstError(
		writePEM(cp.path("ca.crt"), "CERTIFICATE", ca.Raw),
		writeKey(cp.path("ca.key"), caKey),
		writePEM(cp.path("apiserver.crt"), "CERTIFICATE", serving.Raw),
		writeKey(cp.path("apiserver.key"), servingKey),
		writeKey(cp.path("sa.key"), saKey),
		writePEM(cp.path("sa.pub"), "PUBLIC KEY", saPub),
		os.WriteFile(cp.path("tokens.csv"), []byte(tokens), 0o600),
		cp.writeKubeconfig("admin.kubeconfig", "leader-test-admin", cp.adminToken, ca),
		cp.writeKubeconfig("unprivileged.kubeconfig", "leader-test-unprivileged", cp.unprivToken, ca),
		nodeErr,
	)
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// newCert creates a one-day ECDSA P-256 certificate from template, signed by
// parent (self-signed if parent is nil).
func newCert(template, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	template.NotBefore = time.Now().Add(-time.Minute)
	template.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = template, key
	}
	// A nil SerialNumber makes CreateCertificate pick a random one.
	der, err := x509.CreateCertificate(rand.Reader, template, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func writePEM(path, blockType string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	return os.WriteFile(path, data, 0o600)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der)
}

const kubeconfigTemplate = `apiVersion: v1
kind: Config
clusters:
- name: leader-test
  cluster:
    server: %[1]s
    certificate-authority-data: %[2]s
users:
- name: %[3]s
  user:
    token: %[4]s
contexts:
- name: %[3]s
  context:
    cluster: leader-test
    user: %[3]s
    namespace: default
current-context: %[3]s
`

func (cp *controlPlane) writeKubeconfig(name, user, token string, ca *x509.Certificate) error {
	return writeKubeconfigFile(cp.path(name), cp.serverURL(), user, token, ca)
}

// writeKubeconfigAt writes a kubeconfig for server (one of the API server's
// addresses) to path.
func (cp *controlPlane) writeKubeconfigAt(path, server, user, token string) error {
	return writeKubeconfigFile(path, server, user, token, cp.ca)
}

func writeKubeconfigFile(path, server, user, token string, ca *x509.Certificate) error {
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	data := fmt.Sprintf(kubeconfigTemplate, server, base64.StdEncoding.EncodeToString(caPEM), user, token)
	return os.WriteFile(path, []byte(data), 0o600)
}

// info is the content of control-plane.json, read by the Rust tests.
type info struct {
	Server                 string `json:"server"`
	Etcd                   string `json:"etcd"`
	CAFile                 string `json:"ca_file"`
	AdminKubeconfig        string `json:"admin_kubeconfig"`
	UnprivilegedKubeconfig string `json:"unprivileged_kubeconfig"`
	AdminToken             string `json:"admin_token"`
	UnprivilegedToken      string `json:"unprivileged_token"`
	KubeAPIServerPID       int    `json:"kube_apiserver_pid"`
	EtcdPID                int    `json:"etcd_pid"`
	KubeAPIServerBin       string `json:"kube_apiserver_bin"`
	EtcdBin                string `json:"etcd_bin"`
	LauncherPID            int    `json:"launcher_pid"`
	KubeAPIServerRestarts  int    `json:"kube_apiserver_restarts"`
	EtcdRestarts           int    `json:"etcd_restarts"`
}

// writeInfo writes control-plane.json atomically, so a reader never sees a
// partial file.
func (cp *controlPlane) writeInfo() error {
	data, err := json.MarshalIndent(info{
		Server:                 cp.serverURL(),
		Etcd:                   cp.etcdURL(),
		CAFile:                 cp.path("ca.crt"),
		AdminKubeconfig:        cp.path("admin.kubeconfig"),
		UnprivilegedKubeconfig: cp.path("unprivileged.kubeconfig"),
		AdminToken:             cp.adminToken,
		UnprivilegedToken:      cp.unprivToken,
		KubeAPIServerPID:       cp.apiserver.cmd.Process.Pid,
		EtcdPID:                cp.etcd.cmd.Process.Pid,
		KubeAPIServerBin:       cp.apiserverBin,
		EtcdBin:                cp.etcdBin,
		LauncherPID:            os.Getpid(),
		KubeAPIServerRestarts:  cp.apiserverRestarts,
		EtcdRestarts:           cp.etcdRestarts,
	}, "", "  ")
	if err != nil {
		return err
	}
	tmp := cp.path("control-plane.json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, cp.path("control-plane.json"))
}
