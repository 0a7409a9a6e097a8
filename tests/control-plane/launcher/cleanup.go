// Cleaning up after a test node (see node.go): its processes, mounts,
// cgroups and host paths, after a normal run and after one that was killed.

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reapStaleNodes removes what killed runs left behind: their processes
// (shims and containers outlive the launcher), mounts, run directories,
// network namespaces, cgroups and host paths. Called with the node lock held,
// so no other test node is running.
func reapStaleNodes() {
	parent := filepath.Join(os.TempDir(), "leader-test-node")
	dirs, _ := filepath.Glob(filepath.Join(parent, "run-*"))
	for _, dir := range dirs {
		if !launcherAlive(dir) {
			logf("node: cleaning up after a run that did not finish: %s", dir)
			for _, what := range cleanRun(dir) {
				logf("node: warning: could not remove %s", what)
			}
			if !hasMounts(dir) {
				_ = os.RemoveAll(dir)
			}
		}
	}
	names, _ := filepath.Glob(filepath.Join(netnsDir, netnsPrefix+"*"))
	for _, path := range names {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(path), netnsPrefix))
		if err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			logf("node: removing network namespace %s of a run that did not finish", filepath.Base(path))
			deleteNetns(filepath.Base(path))
		}
	}
	deleteNetns("")
	for _, what := range cleanMachine() {
		logf("node: warning: could not remove %s", what)
	}
}

// cleanRun kills every process that names the run directory on its command
// line (kubelet, containerd and the shims do) and unmounts everything under
// it. It returns what is left.
func cleanRun(dir string) []string {
	killAll(func() []int {
		return processesMatching(func(pid int, cmdline string) bool { return strings.Contains(cmdline, dir+"/") })
	})
	unmountUnder(dir)
	var left []string
	for _, pid := range processesMatching(func(pid int, cmdline string) bool { return strings.Contains(cmdline, dir+"/") }) {
		left = append(left, fmt.Sprintf("process %d", pid))
	}
	for _, mount := range mountsUnder(dir) {
		left = append(left, "mount "+mount)
	}
	return left
}

// cleanMachine kills every process in the node's cgroups (the containers),
// removes those cgroups and the host paths that carry the node's marker. It
// returns what is left.
func cleanMachine() []string {
	killAll(cgroupProcesses)
	var left []string
	for _, mount := range cgroupMounts() {
		root := filepath.Join(mount, nodeCgroup)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		// Deepest first: a cgroup with children cannot be removed.
		slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
		for _, dir := range dirs {
			if err := os.Remove(dir); err != nil {
				left = append(left, fmt.Sprintf("cgroup %s (%v)", dir, err))
			}
		}
	}
	for _, path := range hostPaths {
		if _, err := os.Stat(filepath.Join(path, hostPathMarker)); err != nil {
			continue
		}
		unmountUnder(path)
		if err := os.RemoveAll(path); err != nil {
			left = append(left, fmt.Sprintf("%s (%v)", path, err))
		}
	}
	return left
}

// killAll sends SIGKILL to the processes list returns, until it returns none
// (at most 10 seconds).
func killAll(list func() []int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := slices.DeleteFunc(list(), func(pid int) bool { return pid == os.Getpid() })
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processesMatching lists the processes whose command line (arguments joined
// by spaces) satisfies match. Zombies have none and never match.
func processesMatching(match func(pid int, cmdline string) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", entry.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		if match(pid, string(bytes.ReplaceAll(data, []byte{0}, []byte{' '}))) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cgroupProcesses lists the processes in the node's cgroups.
func cgroupProcesses() []int {
	seen := map[int]bool{}
	for _, mount := range cgroupMounts() {
		_ = filepath.WalkDir(filepath.Join(mount, nodeCgroup), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(path)
			for _, field := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(field); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	return slices.Sorted(maps.Keys(seen))
}

type mountEntry struct{ point, fstype string }

// mounts lists this mount namespace's mounts in the order they were made.
func mounts() []mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var entries []mountEntry
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		before, after, ok := strings.Cut(scanner.Text(), " - ")
		fields, tail := strings.Fields(before), strings.Fields(after)
		if !ok || len(fields) < 5 || len(tail) < 1 {
			continue
		}
		entries = append(entries, mountEntry{point: unescapeMount(fields[4]), fstype: tail[0]})
	}
	return entries
}

// unescapeMount decodes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func cgroupMounts() []string {
	var points []string
	for _, m := range mounts() {
		if (m.fstype == "cgroup" || m.fstype == "cgroup2") && strings.HasPrefix(m.point, "/sys/fs/cgroup") {
			points = append(points, m.point)
		}
	}
	return points
}

// mountsUnder lists the mount points at or under dir, most recent first.
func mountsUnder(dir string) []string {
	var points []string
	for _, m := range mounts() {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			points = append(points, m.point)
		}
	}
	slices.Reverse(points)
	return points
}

func hasMounts(dir string) bool { return len(mountsUnder(dir)) > 0 }

// unmountUnder unmounts everything at or under dir, most recent (and so
// deepest) first, detaching what is busy.
func unmountUnder(dir string) {
	for range 5 {
		points := mountsUnder(dir)
		if len(points) == 0 {
			return
		}
		for _, point := range points {
			if err := unix.Unmount(point, 0); err != nil {
				_ = unix.Unmount(point, unix.MNT_DETACH)
			}
		}
	}
}
