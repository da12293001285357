// Package cluster runs a real single-node Kubernetes on this machine: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd with
// runc, a kubelet, kube-proxy in iptables mode, a bridge pod network and
// CoreDNS, all built from the Go module proxy and Debian (hack/envtest.sh,
// hack/node.sh, hack/test-deps.sh). `make cluster` and the cluster test
// suite both start it with Up and remove it with Down.
//
// Nothing of it leaves the machine: the node's address is a /32 on a bridge
// of its own, pods get routes only to their bridge, the Service range and
// the node, nothing is masqueraded, and a packet for the Service range that
// kube-proxy did not rewrite (an unused ClusterIP) is refused on the host.
// Down removes every process, mount, interface, route, iptables chain,
// cgroup and file Up made, and puts back the sysctls Up and the kubelet
// changed.
package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The cluster's fixed addresses and names. Only one such cluster can run on
// a machine at a time: kube-proxy owns the host's KUBE-* iptables chains.
const (
	NodeName = "privateapps-node"
	// NodeIP is the node's address: a /32 on NodeBridge, reachable from the
	// host and from pods, never from outside the machine. Every component
	// listens on it.
	NodeIP = "10.245.0.1"
	// ServiceRange holds the ClusterIPs; APIServiceIP is the kubernetes
	// Service, DNSServiceIP CoreDNS's.
	ServiceRange = "10.96.0.0/16"
	APIServiceIP = "10.96.0.1"
	DNSServiceIP = "10.96.0.10"
	// PodSubnet is the pod bridge's subnet; the rest of PodRange is
	// unreachable.
	PodSubnet  = "10.244.0.0/24"
	PodRange   = "10.244.0.0/16"
	NodeBridge = "pa-node0"
	PodBridge  = "pa-cni0"

	apiPort       = 6443
	etcdPort      = 2379
	etcdPeerPort  = 2380
	kubeletPort   = 10250
	kubeletHealth = 10248
	proxyHealth   = 10256
	proxyMetrics  = 10249
	cmPort        = 10257
	schedulerPort = 10259

	// chain is the iptables chain of the cluster's own rules.
	chain = "PRIVATEAPPS-CLUSTER"
	// runDir holds the sockets and the runtime's state: a unix socket path
	// may not be longer than 107 bytes, which a checkout's bin/ can exceed.
	runDir = "/run/privateapps-cluster"
)

// Config says where the cluster's binaries are and where it keeps its
// state.
type Config struct {
	// Dir holds everything the cluster writes (certificates, configuration,
	// logs, etcd's data, the kubelet's root, the local volumes); Down
	// removes it.
	Dir string
	// Bin holds etcd, the Kubernetes binaries, containerd, ctr, the runc
	// shim and coredns (bin/k8s).
	Bin string
	// CNIBin holds the CNI plugins (Debian's /usr/lib/cni).
	CNIBin string
	// Images are OCI or Docker archives imported into the node's containerd
	// before the kubelet starts (the operator's image), besides the pause
	// and CoreDNS images Up writes itself.
	Images []string
	// Log receives a line per step.
	Log io.Writer
}

// Cluster is a running cluster.
type Cluster struct {
	Config
	// Kubeconfig is the path of a cluster-admin kubeconfig.
	Kubeconfig string
}

// Open returns the cluster whose state is in cfg.Dir, without starting
// anything (for `make cluster-down` and for commands run next to a cluster
// that is up).
func Open(cfg Config) (*Cluster, error) {
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = abs
	if cfg.Bin, err = filepath.Abs(cfg.Bin); err != nil {
		return nil, err
	}
	if cfg.CNIBin == "" {
		cfg.CNIBin = "/usr/lib/cni"
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	return &Cluster{Config: cfg, Kubeconfig: filepath.Join(abs, "kubeconfig")}, nil
}

// Up brings up the cluster and returns once the node is Ready and CoreDNS
// answers. A cluster that is already up is an error; what a cluster that
// ended without Down left behind is removed first.
func Up(ctx context.Context, cfg Config) (*Cluster, error) {
	c, err := Open(cfg)
	if err != nil {
		return nil, err
	}
	if running := c.running(); len(running) > 0 {
		return nil, fmt.Errorf("a cluster is already up in %s (%s running): `make cluster-down` removes it", c.Dir, strings.Join(running, ", "))
	}
	if err := c.preflight(); err != nil {
		return nil, err
	}
	if err := c.Down(); err != nil {
		return nil, fmt.Errorf("removing what an earlier cluster left: %w", err)
	}
	start := time.Now()
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"certificates and kubeconfigs", func(context.Context) error { return c.writePKI() }},
		{"the node's network (bridge " + NodeBridge + ", routes, iptables chain " + chain + ")", func(context.Context) error { return c.setUpNetwork() }},
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"kube-controller-manager and kube-scheduler", c.startControllers},
		{"containerd and the images", c.startContainerd},
		{"kubelet and kube-proxy", c.startNode},
		{"CoreDNS and the local StorageClass", c.applyAddons},
	}
	for _, s := range steps {
		c.logf("cluster: %s", s.what)
		if err := s.do(ctx); err != nil {
			return c, fmt.Errorf("%s: %w (logs in %s)", s.what, err, c.path("logs"))
		}
	}
	c.logf("cluster: up in %s; KUBECONFIG=%s", time.Since(start).Round(time.Second), c.Kubeconfig)
	return c, nil
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.Log, format+"\n", args...)
}

func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.Dir}, elem...)...)
}

func (c *Cluster) bin(name string) string {
	return filepath.Join(c.Bin, name)
}

// preflight says what is missing before anything is started.
func (c *Cluster) preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("a node needs root (network, mounts, cgroups)")
	}
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "containerd", "ctr", "containerd-shim-runc-v2", "coredns"} {
		if _, err := os.Stat(c.bin(b)); err != nil {
			missing = append(missing, c.bin(b)+" (make node-components)")
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(c.CNIBin, p)); err != nil {
			missing = append(missing, filepath.Join(c.CNIBin, p)+" (apt-get install containernetworking-plugins)")
		}
	}
	for _, cmd := range []string{"runc", "iptables", "iptables-save", "iptables-restore", "ip", "kubectl"} {
		if _, err := lookPath(cmd); err != nil {
			missing = append(missing, cmd+" (make test-deps)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

// lookPath finds a command on the PATH or in /usr/sbin and /sbin, which a
// non-login root shell may lack.
func lookPath(cmd string) (string, error) {
	if p, err := exec.LookPath(cmd); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, cmd); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", cmd)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// run runs a command and returns its error with its output.
func run(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

func output(name string, args ...string) (string, error) {
	p, err := lookPath(name)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd := exec.Command(p, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Kubectl runs kubectl against the cluster as its admin and returns what it
// printed.
func (c *Cluster) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// waitFor polls check every half second until it returns nil, the context
// ends or timeout passes; the error says what check last returned.
func waitFor(ctx context.Context, timeout time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		var gone *exited
		if errors.As(last, &gone) {
			return fmt.Errorf("%s: %w", what, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %s: %w", what, timeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitFor is the package's waitFor for a check that needs the component
// name: it fails at once, with the end of the component's log, when the
// component has ended.
func (c *Cluster) waitFor(ctx context.Context, name string, timeout time.Duration, what string, check func() error) error {
	return waitFor(ctx, timeout, what, func() error {
		if c.pid(name) == 0 {
			return &exited{name: name, log: c.logTail(name)}
		}
		return check()
	})
}

// exited is the error of a component that ended while it was waited for.
type exited struct{ name, log string }

func (e *exited) Error() string {
	return fmt.Sprintf("%s ended; the end of its log:\n%s", e.name, e.log)
}

// logTail returns the last lines of a component's log.
func (c *Cluster) logTail(name string) string {
	b, _ := os.ReadFile(c.path("logs", name+".log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// httpsOK checks that GET url answers 200 to the admin's client certificate.
func (c *Cluster) httpsOK(url string) error {
	cert, err := tls.LoadX509KeyPair(c.path("pki", "admin.crt"), c.path("pki", "admin.key"))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// hostPort joins the node's address and a port.
func hostPort(port int) string {
	return net.JoinHostPort(NodeIP, strconv.Itoa(port))
}

// process is a component the cluster runs.
type process struct {
	name string
	bin  string
	args []string
	env  []string
}

// start runs p in a session of its own (so that it outlives `make
// cluster`), logging to logs/NAME.log, and records its PID.
func (c *Cluster) start(p process) error {
	logFile, err := os.OpenFile(c.path("logs", p.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	// Reap it when it ends while this process lives; a process that
	// outlives us is reaped by init.
	go func() { _ = cmd.Wait() }()
	return os.WriteFile(c.path("pids", p.name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
}

// pid returns the PID of a component that still runs, or 0.
func (c *Cluster) pid(name string) int {
	b, err := os.ReadFile(c.path("pids", name))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	// The PID may have been reused: it must still run a binary of ours.
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || !strings.HasPrefix(exe, c.Bin+"/") {
		return 0
	}
	return pid
}

// running lists the components that run.
func (c *Cluster) running() []string {
	entries, _ := os.ReadDir(c.path("pids"))
	var names []string
	for _, e := range entries {
		if c.pid(e.Name()) != 0 {
			names = append(names, e.Name())
		}
	}
	return names
}

// stop ends a component: SIGTERM, then SIGKILL after grace.
func (c *Cluster) stop(name string, grace time.Duration) {
	pid := c.pid(name)
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for c.pid(name) != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if c.pid(name) != 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 50 && c.pid(name) != 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	_ = os.Remove(c.path("pids", name))
}
