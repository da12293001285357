package cluster

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var base64Encoding = base64.StdEncoding

// sysctls are the kernel settings Up or the kubelet change; Up records
// their values first and Down puts them back.
var sysctls = []string{
	"net/ipv4/ip_forward",
	"net/bridge/bridge-nf-call-iptables",
	"vm/overcommit_memory",
	"kernel/panic",
	"kernel/panic_on_oops",
}

// hostDirs are directories outside the cluster's own that its parts write
// to whatever their configuration says: containerd's shim sockets
// (/run/containerd/s), the CNI plugins' cache, the kubelet's device-plugin
// socket and its log links. Up records which of them did not exist; Down
// removes those again (and only the log links of its own pods from
// /var/log/containers when that was there before).
var hostDirs = []string{"/run/containerd", "/var/lib/cni", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods"}

func (c *Cluster) saveHostDirs() error {
	var made []string
	for _, d := range hostDirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			made = append(made, d)
		}
	}
	return os.WriteFile(c.path("host-dirs"), []byte(strings.Join(made, "\n")), 0o644)
}

func (c *Cluster) removeHostDirs() error {
	b, err := os.ReadFile(c.path("host-dirs"))
	if err != nil {
		return nil
	}
	var errs []error
	for _, d := range strings.Fields(string(b)) {
		if slices.Contains(hostDirs, d) {
			errs = append(errs, os.RemoveAll(d))
		}
	}
	return errors.Join(errs...)
}

// setUpNetwork makes the node's address, the routes that keep the
// cluster's packets on the machine and the cluster's iptables chain.
func (c *Cluster) setUpNetwork() error {
	if err := c.saveSysctls(); err != nil {
		return err
	}
	if err := c.saveHostDirs(); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "link", "add", NodeBridge, "type", "bridge"},
		{"ip", "addr", "add", NodeIP + "/32", "dev", NodeBridge},
		{"ip", "link", "set", NodeBridge, "up"},
		// The Service range goes to the node's bridge, which has no ports:
		// a ClusterIP kube-proxy did not rewrite goes nowhere (and the chain
		// below refuses it at once). An `unreachable` route cannot be used
		// here: the host routes a connection before kube-proxy's DNAT, so
		// it would refuse every ClusterIP.
		{"ip", "route", "add", ServiceRange, "dev", NodeBridge},
		// Pod addresses outside the bridge's subnet do not exist.
		{"ip", "route", "add", "unreachable", PodRange},
		{"iptables", "-N", chain},
		// Forwarding happens only between pods on the bridge (a pod calling
		// another through a Service); nothing is forwarded off the machine.
		{"iptables", "-A", chain, "-i", PodBridge, "-o", PodBridge, "-j", "RETURN"},
		{"iptables", "-A", chain, "-d", ServiceRange, "-j", "REJECT", "--reject-with", "icmp-net-unreachable"},
		{"iptables", "-A", chain, "-j", "DROP"},
		{"iptables", "-I", "FORWARD", "1", "-j", chain},
		{"iptables", "-N", chain + "-OUT"},
		{"iptables", "-A", chain + "-OUT", "-d", ServiceRange, "-j", "REJECT", "--reject-with", "icmp-net-unreachable"},
		{"iptables", "-I", "OUTPUT", "1", "-j", chain + "-OUT"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	for k, v := range map[string]string{"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"} {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) saveSysctls() error {
	var b strings.Builder
	for _, k := range sysctls {
		v, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s=%s\n", k, strings.TrimSpace(string(v)))
	}
	return os.WriteFile(c.path("sysctls"), []byte(b.String()), 0o644)
}

func (c *Cluster) restoreSysctls() error {
	b, err := os.ReadFile(c.path("sysctls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || !slices.Contains(sysctls, k) {
			continue
		}
		errs = append(errs, os.WriteFile("/proc/sys/"+k, []byte(v), 0o644))
	}
	return errors.Join(errs...)
}

// Down removes the cluster and everything it made on the host: processes,
// containers, mounts, cgroups, interfaces, routes, iptables chains, the
// kubelet's log links, the sysctls it changed and its directories. It is
// safe to call when nothing runs, and again after an error.
func (c *Cluster) Down() error {
	var errs []error
	c.stop("kubelet", 20*time.Second)
	c.killContainers()
	for _, name := range []string{"kube-proxy", "containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"} {
		c.stop(name, 20*time.Second)
	}
	c.unmountUnder(c.Dir)
	c.unmountUnder(runDir)
	errs = append(errs, removeCgroups())
	for _, link := range []string{PodBridge, NodeBridge} {
		if _, err := os.Stat("/sys/class/net/" + link); err == nil {
			errs = append(errs, run("ip", "link", "del", link))
		}
	}
	_ = run("ip", "route", "del", "unreachable", PodRange)
	_ = run("ip", "route", "del", ServiceRange)
	for _, cmd := range []string{"iptables", "ip6tables"} {
		errs = append(errs, cleanIptables(cmd))
	}
	errs = append(errs, c.restoreSysctls())
	errs = append(errs, c.removeLogLinks())
	errs = append(errs, c.removeHostDirs())
	errs = append(errs, os.RemoveAll(runDir))
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killContainers kills every container process (whatever runs in the
// kubepods cgroups) and the runc shims of this cluster, as a power cut
// would.
func (c *Cluster) killContainers() {
	shim := c.bin("containerd-shim-runc-v2")
	for i := 0; i < 20; i++ {
		pids := cgroupProcs()
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe == shim {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubepods lists the kubelet's cgroup directories (cgroup v1: one per
// controller), deepest first.
func kubepods() []string {
	var dirs []string
	for _, root := range []string{"/sys/fs/cgroup"} {
		ctrls, _ := os.ReadDir(root)
		for _, ctrl := range ctrls {
			base := filepath.Join(root, ctrl.Name(), "kubepods")
			if ctrl.Name() == "kubepods" {
				base = filepath.Join(root, "kubepods") // cgroup v2
			}
			_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return slices.Compact(dirs)
}

func cgroupProcs() []int {
	var pids []int
	for _, dir := range kubepods() {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func removeCgroups() error {
	var errs []error
	for _, dir := range kubepods() {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// unmountUnder unmounts everything mounted under dir, deepest first.
func (c *Cluster) unmountUnder(dir string) {
	for i := 0; i < 5; i++ {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return
		}
		var mounts []string
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) < 5 {
				continue
			}
			mp := unescapeMount(fields[4])
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				mounts = append(mounts, mp)
			}
		}
		f.Close()
		if len(mounts) == 0 {
			return
		}
		sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
		for _, m := range mounts {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cleanIptables removes the chains of kube-proxy (KUBE-*), the CNI plugins
// (CNI-*) and the cluster (PRIVATEAPPS-CLUSTER*) from every table, and
// every rule that jumps to them, leaving other rules as they are.
func cleanIptables(cmd string) error {
	if _, err := lookPath(cmd + "-save"); err != nil {
		return nil
	}
	ours := func(name string) bool {
		return strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "CNI-") || strings.HasPrefix(name, chain)
	}
	var errs []error
	for _, table := range []string{"filter", "nat", "mangle", "raw"} {
		saved, err := output(cmd+"-save", "-t", table)
		if err != nil {
			continue
		}
		var kept []string
		changed := false
		for _, line := range strings.Split(saved, "\n") {
			fields := strings.Fields(line)
			drop := false
			switch {
			case strings.HasPrefix(line, ":"):
				drop = ours(strings.TrimPrefix(fields[0], ":"))
			case strings.HasPrefix(line, "-A "):
				drop = len(fields) > 1 && ours(fields[1])
				for i, f := range fields {
					if (f == "-j" || f == "-g") && i+1 < len(fields) && ours(fields[i+1]) {
						drop = true
					}
				}
			}
			if drop {
				changed = true
				continue
			}
			kept = append(kept, line)
		}
		if !changed {
			continue
		}
		p, err := lookPath(cmd + "-restore")
		if err != nil {
			return err
		}
		restore := exec.Command(p)
		restore.Stdin = strings.NewReader(strings.Join(kept, "\n"))
		if out, err := restore.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s-restore (%s): %w: %s", cmd, table, err, out))
		}
	}
	return errors.Join(errs...)
}

// removeLogLinks removes the links the kubelet makes in /var/log/containers
// to this cluster's pod logs.
func (c *Cluster) removeLogLinks() error {
	entries, err := os.ReadDir("/var/log/containers")
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join("/var/log/containers", e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, c.path("pod-logs")+"/") {
			errs = append(errs, os.Remove(p))
		}
	}
	return errors.Join(errs...)
}
