// The test node: with --node, the launcher also runs a real single-node
// cluster next to its control plane (kube-controller-manager,
// kube-scheduler, containerd and kubelet, with runc and the CNI plugins from
// the distribution), so that pods run as real containers.
//
// Everything runs in a network namespace created for the run,
// /run/netns/leader-node-<launcher pid>: the launcher re-executes itself in it
// before starting anything, so every process it starts (the control plane,
// the node and the command of "run") shares it. The node's address,
// 10.200.0.1, sits on that namespace's loopback; kube-apiserver also serves
// there (its certificate names it) for kubelet and for pods, which reach it
// through the CNI bridge. Nothing of it is reachable from outside the
// namespace: to use the node from a shell, enter the namespace with
// `nsenter --net=/run/netns/NAME`.
//
// One test node runs on a machine at a time (kubelet and containerd write a
// few fixed host paths): /run/leader-test-node.lock says which run holds it.
// Teardown deletes every pod and waits for kubelet to stop them, stops
// kubelet, deletes what is left in containerd (so the shims exit), stops
// containerd and the control plane, then kills whatever is left in the
// node's cgroups or names the run directory, unmounts everything under the
// run directory deepest first, and removes the cgroup directories, the
// namespace and the host paths. A run killed with SIGKILL leaves shims and
// containers behind (they do not die with their parent); the next run with
// --node removes all of it before it starts.

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	nodeIP          = "10.200.0.1"
	podSubnet       = "10.201.0.0/24"
	netnsEnv        = "LEADER_TEST_NODE_NETNS"
	netnsPrefix     = "leader-node-"
	netnsDir        = "/run/netns"
	nodeCgroup      = "leader-test-node"
	nodeLockPath    = "/run/leader-test-node.lock"
	hostPathMarker  = ".leader-test-node"
	nodeReadyLimit  = 120 * time.Second
	podsGoneLimit   = 30 * time.Second
	podDeleteGrace  = 5 // seconds: SIGTERM, then SIGKILL after that
	containerdLimit = 30 * time.Second
)

// hostPaths are written by kubelet and containerd whatever their flags say.
// Each run creates them with a marker file inside, and removes them; a path
// that exists without the marker belongs to someone else and stops the run.
// (/var/log/pods and /run/containerd are not among them: podLogsDir, runc's
// root and the shims' socket directory are configured elsewhere.)
var hostPaths = []string{
	"/var/lib/kubelet",    // device-plugins/kubelet.sock
	"/var/log/containers", // kubelet's symlinks to the container logs in podLogsDir
	"/var/lib/cni",        // libcni's cache of attachments (results/)
	shimSocketDir,
}

// shimSocketDir holds the shims' sockets: containerd wants at most 38 bytes.
const shimSocketDir = "/run/leader-test-node"

// enterNodeNetns creates the run's network namespace and re-executes the
// launcher inside it, with the same process id and arguments. It returns nil
// (without doing anything) once running inside it.
func enterNodeNetns() error {
	if os.Geteuid() != 0 {
		return errors.New("--node needs root: kubelet, containerd and runc manage mounts, cgroups and network namespaces")
	}
	if name := os.Getenv(netnsEnv); name != "" && sameNetns("/proc/self/ns/net", filepath.Join(netnsDir, name)) {
		return nil
	}
	name := netnsPrefix + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	fd, err := unix.Open(filepath.Join(netnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		// The main goroutine is locked to the main thread (see main), so
		// this is the thread that executes the launcher again.
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
	}
	if err == nil {
		var exe string
		if exe, err = os.Executable(); err == nil {
			env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
				return strings.HasPrefix(kv, netnsEnv+"=")
			}), netnsEnv+"="+name)
			err = syscall.Exec(exe, os.Args, env)
		}
	}
	deleteNetns(name)
	return fmt.Errorf("entering network namespace %s: %w", name, err)
}

// sameNetns reports whether two namespace files name the same namespace.
func sameNetns(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// deleteNetns removes a namespace created with `ip netns add`; it goes away
// once no process is left in it. When no namespace is left in /run/netns, it
// also removes the mount and the directory `ip netns add` made for them.
func deleteNetns(name string) {
	if name != "" {
		path := filepath.Join(netnsDir, name)
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
	}
	if entries, err := os.ReadDir(netnsDir); err == nil && len(entries) == 0 {
		unmountUnder(netnsDir)
		_ = os.Remove(netnsDir)
	}
}

// node is the test node of one run.
type node struct {
	cp        *controlPlane
	binDir    string            // kubelet, containerd, ... (tests/node/build.sh)
	imagesDir string            // NAME.tar and images.json (tests/node/images.py)
	images    map[string]string // NAME -> image reference
	netns     string
	lock      *os.File
	dir       string // <state>/node
	token     string // kubelet's bearer token (system:node:<nodeIP>)
	cgroups   []string

	containerd, controllerManager, scheduler, kubelet *server
	ready                                             time.Duration
}

// nodeInfo is the content of node.json, read by the Rust tests.
type nodeInfo struct {
	NodeName          string            `json:"node_name"`
	NodeIP            string            `json:"node_ip"`
	APIServerHost     string            `json:"api_server_host"`
	APIServerPort     int               `json:"api_server_port"`
	Netns             string            `json:"netns"`
	Images            map[string]string `json:"images"`
	ContainerdAddress string            `json:"containerd_address"`
	Ctr               string            `json:"ctr"`
	PodLogsDir        string            `json:"pod_logs_dir"`
	KubeletPID        int               `json:"kubelet_pid"`
	ContainerdPID     int               `json:"containerd_pid"`
	ReadySeconds      float64           `json:"ready_seconds"`
}

// newNode takes the machine-wide node lock and removes what earlier runs
// left behind. It runs inside the run's network namespace.
func newNode(binDir, imagesDir string) (*node, error) {
	n := &node{netns: os.Getenv(netnsEnv)}
	var err error
	if n.binDir, err = filepath.Abs(binDir); err != nil {
		return nil, err
	}
	for _, bin := range []string{"kubelet", "kube-controller-manager", "kube-scheduler", "containerd", "ctr", "containerd-shim-runc-v2"} {
		if info, err := os.Stat(filepath.Join(n.binDir, bin)); err != nil || info.IsDir() {
			return nil, fmt.Errorf("no %s in %s (--node names the directory tests/node/build.sh prints)", bin, n.binDir)
		}
	}
	for _, bin := range []string{"runc", "iptables", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("the test node needs %s: tests/node/build.sh installs it", bin)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, errors.New("the test node needs the CNI plugins in /usr/lib/cni: tests/node/build.sh installs them")
	}
	if imagesDir == "" {
		return nil, errors.New("--node needs --images DIR (the directory tests/node/images.py prints)")
	}
	if n.imagesDir, err = filepath.Abs(imagesDir); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(n.imagesDir, "images.json"))
	if err == nil {
		err = json.Unmarshal(data, &n.images)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the images: %w", err)
	}
	if n.images["pause"] == "" {
		return nil, fmt.Errorf("%s has no pause image", filepath.Join(n.imagesDir, "images.json"))
	}

	if err := n.takeLock(); err != nil {
		return nil, err
	}
	if err := setUpLoopback(); err != nil {
		n.lock.Close()
		return nil, err
	}
	return n, nil
}

// takeLock takes /run/leader-test-node.lock, then removes whatever earlier
// runs left behind: with the lock held, no other test node exists.
func (n *node) takeLock() error {
	f, err := os.OpenFile(nodeLockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(f)
		f.Close()
		return fmt.Errorf("another test node is running on this machine (%s holds %s: %s); "+
			"one node at a time can run, as kubelet and containerd share a few host paths",
			strings.TrimSpace(string(holder)), nodeLockPath, err)
	}
	n.lock = f
	reapStaleNodes()
	for _, path := range hostPaths {
		if _, err := os.Stat(path); err == nil {
			f.Close()
			return fmt.Errorf("%s exists and is not the test node's: a kubelet or containerd seems to be "+
				"installed on this machine, and the test node would share it; remove it or run elsewhere", path)
		}
	}
	return nil
}

// recordRun writes this run into the lock file, for the next run to clean up
// after it if it is killed.
func (n *node) recordRun() error {
	record := fmt.Sprintf("launcher %d, run directory %s, network namespace %s\n", os.Getpid(), n.cp.state, n.netns)
	if err := n.lock.Truncate(0); err != nil {
		return err
	}
	_, err := n.lock.WriteAt([]byte(record), 0)
	return err
}

// setUpLoopback brings up the namespace's loopback and puts the node's
// address on it.
func setUpLoopback() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", nodeIP + "/32", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

func (n *node) path(parts ...string) string {
	return filepath.Join(append([]string{n.dir}, parts...)...)
}

func (n *node) containerdAddress() string { return n.path("containerd.sock") }

func (n *node) apiURL() string { return fmt.Sprintf("https://%s:%d", nodeIP, n.cp.apiPort) }

// start brings the node up on the running control plane and waits until it
// is Ready. It must be called from the main goroutine (see main).
func (n *node) start() error {
	began := time.Now()
	n.dir = n.cp.path("node")
	if err := n.recordRun(); err != nil {
		return fmt.Errorf("writing %s: %w", nodeLockPath, err)
	}
	if err := n.prepare(); err != nil {
		return err
	}
	if err := n.startContainerd(); err != nil {
		return err
	}
	imported := time.Now()
	for _, name := range slices.Sorted(maps.Keys(n.images)) {
		if err := n.ctr("images", "import", filepath.Join(n.imagesDir, name+".tar")); err != nil {
			return fmt.Errorf("importing image %s: %w", name, err)
		}
	}
	logf("node: imported %d images in %.1fs", len(n.images), time.Since(imported).Seconds())

	admin := n.cp.path("admin.kubeconfig")
	var err error
	n.controllerManager, err = startServer("kube-controller-manager", filepath.Join(n.binDir, "kube-controller-manager"),
		n.path("kube-controller-manager.log"),
		"--kubeconfig="+admin,
		"--root-ca-file="+n.cp.path("ca.crt"),
		"--service-account-private-key-file="+n.cp.path("sa.key"),
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*")
	if err != nil {
		return err
	}
	n.scheduler, err = startServer("kube-scheduler", filepath.Join(n.binDir, "kube-scheduler"),
		n.path("kube-scheduler.log"),
		"--kubeconfig="+admin,
		"--leader-elect=false",
		"--secure-port=0")
	if err != nil {
		return err
	}
	n.kubelet, err = startServer("kubelet", filepath.Join(n.binDir, "kubelet"), n.path("kubelet.log"),
		"--config="+n.path("kubelet.yaml"),
		"--kubeconfig="+n.path("kubelet.kubeconfig"),
		"--root-dir="+n.path("kubelet"),
		"--cert-dir="+n.path("kubelet", "pki"),
		"--hostname-override="+nodeIP,
		"--node-ip="+nodeIP)
	if err != nil {
		return err
	}
	if err := n.cp.waitFor(n.kubelet, nodeReadyLimit, n.nodeReady); err != nil {
		return err
	}
	n.ready = time.Since(began)
	if err := n.writeInfo(); err != nil {
		return fmt.Errorf("writing node.json: %w", err)
	}
	logf("node: %s Ready in %.1fs (network namespace %s)", nodeIP, n.ready.Seconds(), n.netns)
	return nil
}

// servers are the node's processes, for waitFor's exit checks.
func (n *node) servers() []*server {
	return []*server{n.containerd, n.controllerManager, n.scheduler, n.kubelet}
}

// prepare writes the configuration files, and creates the host paths and the
// cgroup directories the node uses.
func (n *node) prepare() error {
	for _, dir := range []string{"kubelet", "pod-logs", "containerd", "cni/net.d", "cni/ipam", "runc"} {
		if err := os.MkdirAll(n.path(dir), 0o755); err != nil {
			return err
		}
	}
	for _, path := range hostPaths {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(path, hostPathMarker), []byte(n.cp.state+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := n.makeCgroups(); err != nil {
		return fmt.Errorf("creating the node's cgroups: %w", err)
	}
	return firstError(
		os.WriteFile(n.path("containerd.toml"), []byte(n.containerdConfig()), 0o644),
		os.WriteFile(n.path("kubelet.yaml"), []byte(n.kubeletConfig()), 0o644),
		os.WriteFile(n.path("cni/net.d/10-leader-test.conflist"), []byte(n.cniConfig()), 0o644),
		os.WriteFile(n.path("resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644),
		n.cp.writeKubeconfigAt(n.path("kubelet.kubeconfig"), n.apiURL(), "system:node:"+nodeIP, n.token),
	)
}

// makeCgroups creates the node's cgroup (kubelet's cgroupRoot) in every
// mounted hierarchy; cpuset needs its CPUs and memory nodes filled in.
func (n *node) makeCgroups() error {
	for _, mount := range cgroupMounts() {
		dir := filepath.Join(mount, nodeCgroup)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		n.cgroups = append(n.cgroups, dir)
		for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
			if value, err := os.ReadFile(filepath.Join(mount, file)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, file), value, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (n *node) containerdConfig() string {
	return fmt.Sprintf(`version = 4
root = %[1]q
state = %[2]q
temp = %[3]q
imports = []
# No NRI socket in /var/run/nri; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[plugins."io.containerd.server.v1.grpc"]
  address = %[4]q

[plugins."io.containerd.server.v1.ttrpc"]
  address = "%[4]s.ttrpc"

[plugins."io.containerd.shim.v1.manager"]
  # Short: the shims' socket paths must fit in 108 bytes.
  socket_dir = %[10]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = "%[5]s/image-verifier"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    # Imported from tests/node/images.py's archive: never pulled.
    sandbox = %[6]q

[plugins."io.containerd.cri.v1.runtime"]
  # runc cannot lower oom_score_adj here (no CAP_SYS_RESOURCE for root in this VM).
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %[7]q
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %[8]q
        Root = %[9]q
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, n.path("containerd", "root"), n.path("containerd", "state"), n.path("containerd", "tmp"),
		n.containerdAddress(), n.path("containerd", "opt"), dockerReference(n.images["pause"]),
		n.path("cni", "net.d"), lookPath("runc"), n.path("runc"), shimSocketDir)
}

func (n *node) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 on this machine kind, and PID 1 is not systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%[1]s
containerRuntimeEndpoint: unix://%[2]s
address: %[3]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %[4]s
authorization:
  mode: AlwaysAllow
resolvConf: %[5]s
podLogsDir: %[6]s
failSwapOn: false
# The images are imported, never pulled: never collect them, and evict nothing for disk space.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
rotateCertificates: false
serverTLSBootstrap: false
`, nodeCgroup, n.containerdAddress(), nodeIP, n.cp.path("ca.crt"), n.path("resolv.conf"), n.path("pod-logs"))
}

func (n *node) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "leader-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "dataDir": %q
      }
    }
  ]
}
`, podSubnet, n.path("cni", "ipam"))
}

// dockerReference is the full name containerd gives an image name such as
// leader-test/pause:local.
func dockerReference(name string) string {
	if first, _, ok := strings.Cut(name, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return name
	}
	if !strings.Contains(name, "/") {
		name = "library/" + name
	}
	return "docker.io/" + name
}

func lookPath(name string) string {
	path, err := exec.LookPath(name)
	if err != nil {
		return name
	}
	abs, _ := filepath.Abs(path)
	return abs
}

// startContainerd starts containerd and waits until it answers.
func (n *node) startContainerd() error {
	bin := filepath.Join(n.binDir, "containerd")
	var err error
	// The shim is found on PATH.
	n.containerd, err = startServerEnv("containerd", bin, n.path("containerd.log"),
		[]string{"PATH=" + n.binDir + ":" + os.Getenv("PATH")},
		"--config", n.path("containerd.toml"))
	if err != nil {
		return err
	}
	return n.cp.waitFor(n.containerd, containerdLimit, func() bool {
		return exec.Command(filepath.Join(n.binDir, "ctr"), "--address", n.containerdAddress(), "version").Run() == nil
	})
}

// ctr runs ctr in containerd's k8s.io namespace (the one CRI uses).
func (n *node) ctr(args ...string) error {
	_, err := n.ctrOutput(args...)
	return err
}

func (n *node) ctrOutput(args ...string) (string, error) {
	full := append([]string{"--address", n.containerdAddress(), "--namespace", "k8s.io"}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(n.binDir, "ctr"), full...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// nodeReady reports whether the API server shows the node with condition
// Ready=True.
func (n *node) nodeReady() bool {
	var object struct {
		Status struct {
			Conditions []struct{ Type, Status string }
		}
	}
	if n.cp.apiGet("/api/v1/nodes/"+nodeIP, &object) != nil {
		return false
	}
	for _, c := range object.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

func (n *node) writeInfo() error {
	data, err := json.MarshalIndent(nodeInfo{
		NodeName:          nodeIP,
		NodeIP:            nodeIP,
		APIServerHost:     nodeIP,
		APIServerPort:     n.cp.apiPort,
		Netns:             n.netns,
		Images:            n.images,
		ContainerdAddress: n.containerdAddress(),
		Ctr:               filepath.Join(n.binDir, "ctr"),
		PodLogsDir:        n.path("pod-logs"),
		KubeletPID:        n.kubelet.cmd.Process.Pid,
		ContainerdPID:     n.containerd.cmd.Process.Pid,
		ReadySeconds:      n.ready.Seconds(),
	}, "", "  ")
	if err != nil {
		return err
	}
	tmp := n.cp.path("node.json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, n.cp.path("node.json"))
}

// logMemory logs the resident memory of every component, and of the shims
// and containers, as teardown begins.
func (n *node) logMemory() {
	var parts []string
	for _, s := range append([]*server{n.cp.apiserver, n.cp.etcd}, n.servers()...) {
		if s != nil && !s.exited() {
			parts = append(parts, fmt.Sprintf("%s %d MB", s.name, rssMB(s.cmd.Process.Pid)))
		}
	}
	shims := processesMatching(func(pid int, cmdline string) bool {
		return strings.Contains(cmdline, "containerd-shim-runc-v2") && strings.Contains(cmdline, n.dir)
	})
	total := 0
	for _, pid := range shims {
		total += rssMB(pid)
	}
	parts = append(parts, fmt.Sprintf("%d shims %d MB", len(shims), total))
	logf("node: memory (RSS) before teardown: %s", strings.Join(parts, ", "))
}

func rssMB(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return (kb + 512) / 1024
		}
	}
	return 0
}

// stopWorkloads is the first part of teardown, while the API server still
// runs: no controller recreates pods, every pod is deleted and kubelet
// stops its containers, then kubelet stops and containerd deletes what is
// left, so that every shim exits; then containerd stops.
func (n *node) stopWorkloads() {
	began := time.Now()
	n.logMemory()
	n.controllerManager.stop()
	n.scheduler.stop()
	if n.kubelet != nil && !n.kubelet.exited() && !n.cp.apiserver.exited() {
		if err := n.deleteAllPods(); err != nil {
			logf("node: warning: deleting the pods: %v", err)
		}
	}
	n.kubelet.stop()
	if n.containerd != nil && !n.containerd.exited() {
		n.deleteContainers()
	}
	n.containerd.stop()
	logf("node: workloads and node processes stopped in %.1fs", time.Since(began).Seconds())
}

// deleteAllPods deletes the pods of every namespace and waits until kubelet
// has stopped them and they are gone.
func (n *node) deleteAllPods() error {
	var pods podList
	if err := n.cp.apiGet("/api/v1/pods", &pods); err != nil {
		return err
	}
	namespaces := map[string]bool{}
	for _, pod := range pods.Items {
		namespaces[pod.Metadata.Namespace] = true
	}
	for ns := range namespaces {
		path := fmt.Sprintf("/api/v1/namespaces/%s/pods?gracePeriodSeconds=%d", ns, podDeleteGrace)
		if err := n.cp.apiDo(http.MethodDelete, path, nil); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(podsGoneLimit)
	for {
		if err := n.cp.apiGet("/api/v1/pods", &pods); err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var names []string
			for _, pod := range pods.Items {
				names = append(names, pod.Metadata.Namespace+"/"+pod.Metadata.Name)
			}
			return fmt.Errorf("pods still there after %v: %s", podsGoneLimit, strings.Join(names, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type podList struct {
	Items []struct {
		Metadata struct{ Name, Namespace string }
	}
}

// deleteContainers kills and deletes every task and container containerd
// still has, so that their shims exit.
func (n *node) deleteContainers() {
	tasks, err := n.ctrOutput("tasks", "ls", "-q")
	if err != nil {
		logf("node: warning: %v", err)
	}
	for _, id := range strings.Fields(tasks) {
		if err := n.ctr("tasks", "delete", "--force", id); err != nil {
			logf("node: warning: %v", err)
		}
	}
	containers, err := n.ctrOutput("containers", "ls", "-q")
	if err != nil {
		logf("node: warning: %v", err)
	}
	if ids := strings.Fields(containers); len(ids) > 0 {
		if err := n.ctr(append([]string{"containers", "delete"}, ids...)...); err != nil {
			logf("node: warning: %v", err)
		}
	}
}

// cleanUp is the last part of teardown, once every process of the run has
// stopped: it removes what the node left on the machine. It returns what it
// could not remove.
func (n *node) cleanUp() []string {
	began := time.Now()
	var left []string
	if n.dir != "" {
		left = cleanRun(n.cp.state)
	}
	left = append(left, cleanMachine()...)
	deleteNetns(n.netns)
	if _, err := os.Stat(filepath.Join(netnsDir, n.netns)); err == nil {
		left = append(left, "network namespace "+n.netns)
	}
	n.lock.Close()
	logf("node: cleaned up in %.1fs", time.Since(began).Seconds())
	return left
}

// apiGet GETs path from the API server as the admin and decodes the JSON
// answer into out.
func (cp *controlPlane) apiGet(path string, out any) error {
	body, err := cp.apiRequest(http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, out)
}

func (cp *controlPlane) apiDo(method, path string, body io.Reader) error {
	_, err := cp.apiRequest(method, path, body)
	return err
}

func (cp *controlPlane) apiRequest(method, path string, body io.Reader) ([]byte, error) {
	req, err := http.NewRequest(method, cp.serverURL()+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+cp.adminToken)
	req.Header.Set("Accept", "application/json")
	resp, err := cp.apiClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
}

// nodeCredentials writes the client certificate kube-apiserver shows kubelet
// (for logs, exec and port-forward).
func (cp *controlPlane) nodeCredentials(ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	client, clientKey, err := newCert(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	if err != nil {
		return err
	}
	return firstError(
		writePEM(cp.path("apiserver-kubelet-client.crt"), "CERTIFICATE", client.Raw),
		writeKey(cp.path("apiserver-kubelet-client.key"), clientKey),
	)
}

// nodeServingAddresses are the addresses the serving certificate names in
// addition to 127.0.0.1 when a node runs: the node's address (kubelet and
// pods connect to it) and the first service address (the `kubernetes`
// Service's cluster IP, which pods are told about).
func nodeServingAddresses() []net.IP {
	return []net.IP{net.ParseIP(nodeIP), net.IPv4(10, 0, 0, 1)}
}
