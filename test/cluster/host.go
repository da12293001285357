package cluster

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// HostState is what the cluster may change on the host, read without
// changing it: TestMain compares the state before Up with the state after
// Down, so that `make cluster-down` is shown to leave the host as it found
// it.
type HostState struct {
	Links, Routes, Chains, Mounts, Cgroups, Dirs, Processes []string
	Sysctls                                                 map[string]string
}

// builtinChains are the kernel's own chains of the filter, nat and mangle
// tables.
var builtinChains = map[string]bool{"PREROUTING": true, "INPUT": true, "FORWARD": true, "OUTPUT": true, "POSTROUTING": true}

// ReadHostState reads the host's network links, routes, iptables chains,
// mounts, kubelet cgroups, the directories the cluster's parts write to,
// the processes that run the cluster's binaries and the sysctls the
// cluster changes.
func (c *Cluster) ReadHostState() HostState {
	var s HostState
	if out, err := output("ip", "-o", "link", "show"); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 {
				s.Links = append(s.Links, strings.TrimSuffix(f[1], ":"))
			}
		}
	}
	if out, err := output("ip", "route", "show", "table", "all"); err == nil {
		s.Routes = strings.Split(strings.TrimSpace(out), "\n")
	}
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := output(cmd)
		if err != nil {
			continue
		}
		table := ""
		for _, line := range strings.Split(out, "\n") {
			switch {
			case strings.HasPrefix(line, "*"):
				table = line
			case strings.HasPrefix(line, ":"):
				// A chain and its policy, without its packet counters. A
				// built-in chain that accepts is left out: the kernel makes
				// a table's built-in chains the first time anything uses the
				// table, on a fresh machine while the cluster runs, and
				// keeps them (empty, accepting) until its module is
				// unloaded; a changed policy or a rule still shows.
				chain := strings.Fields(line)[:2]
				if builtinChains[chain[0][1:]] && chain[1] == "ACCEPT" {
					continue
				}
				s.Chains = append(s.Chains, cmd+" "+table+" "+strings.Join(chain, " "))
			case strings.HasPrefix(line, "-A "):
				s.Chains = append(s.Chains, cmd+" "+table+" "+line)
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.Fields(line); len(f) > 4 {
				s.Mounts = append(s.Mounts, f[4])
			}
		}
	}
	s.Cgroups = kubepods()
	for _, d := range append(slices.Clone(hostDirs), c.Dir, runDir) {
		if _, err := os.Stat(d); err == nil {
			s.Dirs = append(s.Dirs, d)
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil || !strings.HasPrefix(exe, c.Bin+"/") {
			continue
		}
		// etcd and kube-apiserver also run for envtest suites at the same
		// time: only those with the cluster's directory are its own.
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if shared := strings.HasSuffix(exe, "/etcd") || strings.HasSuffix(exe, "/kube-apiserver"); !shared || strings.Contains(string(cmdline), c.Dir) {
			s.Processes = append(s.Processes, exe)
		}
	}
	s.Sysctls = map[string]string{}
	for _, k := range sysctls {
		if v, err := os.ReadFile("/proc/sys/" + k); err == nil {
			s.Sysctls[k] = strings.TrimSpace(string(v))
		}
	}
	return s
}

// Diff lists what differs from an earlier state, one line each.
func (s HostState) Diff(before HostState) []string {
	var diffs []string
	list := func(what string, was, is []string) {
		for _, x := range is {
			if !slices.Contains(was, x) {
				diffs = append(diffs, fmt.Sprintf("%s left: %s", what, x))
			}
		}
		for _, x := range was {
			if !slices.Contains(is, x) {
				diffs = append(diffs, fmt.Sprintf("%s gone: %s", what, x))
			}
		}
	}
	list("link", before.Links, s.Links)
	list("route", before.Routes, s.Routes)
	list("iptables", before.Chains, s.Chains)
	list("mount", before.Mounts, s.Mounts)
	list("cgroup", before.Cgroups, s.Cgroups)
	list("directory", before.Dirs, s.Dirs)
	list("process", before.Processes, s.Processes)
	for k, v := range before.Sysctls {
		if s.Sysctls[k] != v {
			diffs = append(diffs, fmt.Sprintf("sysctl %s is %s, was %s", k, s.Sysctls[k], v))
		}
	}
	return diffs
}
