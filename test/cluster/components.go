package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// writePKI writes the cluster's authorities, every component's certificate
// and the kubeconfigs that use them.
func (c *Cluster) writePKI() error {
	for _, d := range []string{"pki", "logs", "pids", "etcd", "kubelet", "pod-logs", "volumes", "config", "cni", "images"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	pki := c.path("pki")
	ca, err := newAuthority("privateapps-cluster-ca")
	if err != nil {
		return err
	}
	front, err := newAuthority("privateapps-cluster-front-proxy-ca")
	if err != nil {
		return err
	}
	if err := ca.save(pki, "ca"); err != nil {
		return err
	}
	if err := front.save(pki, "front-proxy-ca"); err != nil {
		return err
	}
	issues := []struct {
		name, cn string
		orgs     []string
		hosts    []string
	}{
		{"apiserver", "kube-apiserver", nil, []string{NodeIP, APIServiceIP, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil},
		{"admin", "privateapps-cluster-admin", []string{"system:masters"}, nil},
		{"controller-manager", "system:kube-controller-manager", nil, []string{NodeIP}},
		{"scheduler", "system:kube-scheduler", nil, []string{NodeIP}},
		{"kube-proxy", "system:kube-proxy", nil, nil},
		{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}, []string{NodeIP, NodeName}},
		{"etcd", "etcd", nil, []string{NodeIP}},
	}
	for _, i := range issues {
		if err := ca.issue(pki, i.name, i.cn, i.orgs, i.hosts...); err != nil {
			return err
		}
	}
	if err := front.issue(pki, "front-proxy-client", "front-proxy-client", nil); err != nil {
		return err
	}
	if err := writeServiceAccountKey(pki); err != nil {
		return err
	}
	for _, user := range []string{"admin", "controller-manager", "scheduler", "kube-proxy", "kubelet"} {
		file := c.path("config", user+".kubeconfig")
		if user == "admin" {
			file = c.Kubeconfig
		}
		if err := c.writeKubeconfig(file, user); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfig writes a kubeconfig for the client certificate NAME.
func (c *Cluster) writeKubeconfig(file, name string) error {
	ca, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	crt, err := os.ReadFile(c.path("pki", name+".crt"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(c.path("pki", name+".key"))
	if err != nil {
		return err
	}
	// Certificates embedded, so the admin kubeconfig can be copied.
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: privateapps
  cluster:
    server: https://%s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: privateapps
  context: {cluster: privateapps, user: %s}
current-context: privateapps
`, hostPort(apiPort), b64(ca), name, b64(crt), b64(key), name)
	return os.WriteFile(file, []byte(text), 0o600)
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	pki := c.path("pki")
	err := c.start(process{name: "etcd", bin: c.bin("etcd"), args: []string{
		"--name=" + NodeName,
		"--data-dir=" + c.path("etcd"),
		"--listen-client-urls=https://" + hostPort(etcdPort),
		"--advertise-client-urls=https://" + hostPort(etcdPort),
		"--listen-peer-urls=http://" + hostPort(etcdPeerPort),
		"--initial-advertise-peer-urls=http://" + hostPort(etcdPeerPort),
		"--initial-cluster=" + NodeName + "=http://" + hostPort(etcdPeerPort),
		"--listen-metrics-urls=http://" + hostPort(etcdPort+2),
		"--cert-file=" + filepath.Join(pki, "etcd.crt"),
		"--key-file=" + filepath.Join(pki, "etcd.key"),
		"--client-cert-auth",
		"--trusted-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--quota-backend-bytes=2147483648",
		"--unsafe-no-fsync", // a test cluster: speed over a power cut
	}})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "etcd", time.Minute, "etcd healthy", func() error {
		return c.httpsOK("https://" + hostPort(etcdPort) + "/health")
	})
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	pki := func(f string) string { return c.path("pki", f) }
	err := c.start(process{name: "kube-apiserver", bin: c.bin("kube-apiserver"), args: []string{
		"--advertise-address=" + NodeIP,
		"--bind-address=" + NodeIP,
		"--secure-port=" + strconv.Itoa(apiPort),
		"--etcd-servers=https://" + hostPort(etcdPort),
		"--etcd-cafile=" + pki("ca.crt"),
		"--etcd-certfile=" + pki("apiserver.crt"),
		"--etcd-keyfile=" + pki("apiserver.key"),
		"--service-cluster-ip-range=" + ServiceRange,
		"--tls-cert-file=" + pki("apiserver.crt"),
		"--tls-private-key-file=" + pki("apiserver.key"),
		"--client-ca-file=" + pki("ca.crt"),
		"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + pki("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki("sa.pub"),
		"--service-account-signing-key-file=" + pki("sa.key"),
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--enable-admission-plugins=NodeRestriction",
		// Webhooks and APIServices reach their pods' endpoints directly.
		"--enable-aggregator-routing=true",
		"--requestheader-client-ca-file=" + pki("front-proxy-ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--proxy-client-cert-file=" + pki("front-proxy-client.crt"),
		"--proxy-client-key-file=" + pki("front-proxy-client.key"),
		"--profiling=false",
	}})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "kube-apiserver", 2*time.Minute, "kube-apiserver ready", func() error {
		return c.httpsOK("https://" + hostPort(apiPort) + "/readyz")
	})
}

func (c *Cluster) startControllers(ctx context.Context) error {
	pki := func(f string) string { return c.path("pki", f) }
	err := c.start(process{name: "kube-controller-manager", bin: c.bin("kube-controller-manager"), args: []string{
		"--kubeconfig=" + c.path("config", "controller-manager.kubeconfig"),
		"--authentication-kubeconfig=" + c.path("config", "controller-manager.kubeconfig"),
		"--authorization-kubeconfig=" + c.path("config", "controller-manager.kubeconfig"),
		"--bind-address=" + NodeIP,
		"--secure-port=" + strconv.Itoa(cmPort),
		"--tls-cert-file=" + pki("controller-manager.crt"),
		"--tls-private-key-file=" + pki("controller-manager.key"),
		"--service-account-private-key-file=" + pki("sa.key"),
		"--root-ca-file=" + pki("ca.crt"),
		"--cluster-signing-cert-file=" + pki("ca.crt"),
		"--cluster-signing-key-file=" + pki("ca.key"),
		"--use-service-account-credentials=true",
		"--service-cluster-ip-range=" + ServiceRange,
		"--allocate-node-cidrs=false",
		"--leader-elect=false",
		"--profiling=false",
	}})
	if err != nil {
		return err
	}
	err = c.start(process{name: "kube-scheduler", bin: c.bin("kube-scheduler"), args: []string{
		"--kubeconfig=" + c.path("config", "scheduler.kubeconfig"),
		"--authentication-kubeconfig=" + c.path("config", "scheduler.kubeconfig"),
		"--authorization-kubeconfig=" + c.path("config", "scheduler.kubeconfig"),
		"--bind-address=" + NodeIP,
		"--secure-port=" + strconv.Itoa(schedulerPort),
		"--tls-cert-file=" + pki("scheduler.crt"),
		"--tls-private-key-file=" + pki("scheduler.key"),
		"--leader-elect=false",
		"--profiling=false",
	}})
	if err != nil {
		return err
	}
	// The ServiceAccount controller makes each namespace's default
	// ServiceAccount; pods are refused until it exists.
	return c.waitFor(ctx, "kube-controller-manager", time.Minute, "the default ServiceAccount", func() error {
		_, err := c.Kubectl(ctx, "", "get", "serviceaccount", "default", "-n", "default")
		return err
	})
}

// containerdConfig is containerd's configuration: the CRI with runc from
// Debian, cgroupfs, the bridge network of cni/, the local pause image, and
// every path under the cluster's directories.
func (c *Cluster) containerdConfig() string {
	runc, _ := lookPath("runc")
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = %[5]q
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %[6]q
  [plugins.'io.containerd.cri.v1.runtime']
    # Root here lacks CAP_SYS_RESOURCE: runc cannot set a negative OOM score.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_unprivileged_ports = false
    enable_unprivileged_icmp = false
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = %[7]q
          Root = %[8]q
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [%[9]q]
      conf_dir = %[10]q
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = %[11]q
`, c.path("containerd"), filepath.Join(runDir, "containerd"), socket, filepath.Join(runDir, "containerd-ttrpc.sock"),
		c.path("containerd-opt"), pauseImage, runc, filepath.Join(runDir, "runc"),
		c.CNIBin, c.path("cni"), NodeIP)
}

// socket is containerd's CRI socket.
var socket = filepath.Join(runDir, "containerd.sock")

// cniConfig is the pod network: a bridge with the pods' gateway, no
// masquerading, and routes only to the Service range and the node (no
// default route: a pod cannot address anything else).
func (c *Cluster) cniConfig() string {
	_, subnet, _ := net.ParseCIDR(PodSubnet)
	gw := make(net.IP, 4)
	copy(gw, subnet.IP.To4())
	gw[3] = 1
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "privateapps-cluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": %q}, {"dst": %q}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, PodBridge, c.path("cni-ipam"), PodSubnet, gw.String(), ServiceRange, NodeIP+"/32")
}

func (c *Cluster) startContainerd(ctx context.Context) error {
	if err := os.WriteFile(c.path("config", "containerd.toml"), []byte(c.containerdConfig()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("cni", "10-privateapps.conflist"), []byte(c.cniConfig()), 0o644); err != nil {
		return err
	}
	if err := c.startContainerdProcess(ctx); err != nil {
		return err
	}
	images, err := c.writeNodeImages()
	if err != nil {
		return err
	}
	for _, img := range append(images, c.Images...) {
		if err := c.ImportImage(ctx, img); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startContainerdProcess(ctx context.Context) error {
	err := c.start(process{name: "containerd", bin: c.bin("containerd"),
		args: []string{"--config", c.path("config", "containerd.toml")},
		// containerd finds the shim on its PATH, the shim finds runc by
		// BinaryName.
		env: []string{"PATH=" + c.Bin + ":/usr/sbin:/usr/bin:/sbin:/bin"}})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "containerd", time.Minute, "containerd answers", func() error {
		_, err := output(c.bin("ctr"), "-a", socket, "version")
		return err
	})
}

// ImportImage loads an image archive (OCI or Docker) into the node's
// containerd, where the kubelet finds it without a registry.
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	_, err := output(c.bin("ctr"), "-a", socket, "-n", "k8s.io", "images", "import", "--no-unpack=false", archive)
	return err
}

// TagImage gives an imported image a second name (as a registry would
// hold the same image under two tags).
func (c *Cluster) TagImage(ctx context.Context, src, dst string) error {
	_, err := output(c.bin("ctr"), "-a", socket, "-n", "k8s.io", "images", "tag", "--force", src, dst)
	return err
}

// kubeletConfig is the kubelet's configuration file. cgroup v1 needs
// failCgroupV1: false (a file setting, no flag); images are never
// collected (there is no registry to pull them again from); eviction only
// when the disk is really full.
func (c *Cluster) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: %[1]s
healthzPort: %[3]d
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%[4]s
podLogsDir: %[5]q
resolvConf: %[6]q
clusterDNS: [%[7]s]
clusterDomain: cluster.local
tlsCertFile: %[8]q
tlsPrivateKeyFile: %[9]q
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[10]q}
authorization: {mode: Webhook}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%%, imagefs.available: 1%%}
serializeImagePulls: false
maxPods: 60
`, NodeIP, kubeletPort, kubeletHealth, socket, c.path("pod-logs"), c.path("config", "resolv.conf"), DNSServiceIP,
		c.path("pki", "kubelet.crt"), c.path("pki", "kubelet.key"), c.path("pki", "ca.crt"))
}

func (c *Cluster) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: %[1]s
bindAddress: %[2]s
healthzBindAddress: %[2]s:%[3]d
metricsBindAddress: %[2]s:%[4]d
clusterCIDR: %[5]s
clientConnection: {kubeconfig: %[6]q}
nodePortAddresses: [%[2]s/32]
iptables: {localhostNodePorts: false, masqueradeAll: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, NodeName, NodeIP, proxyHealth, proxyMetrics, PodRange, c.path("config", "kube-proxy.kubeconfig"))
}

func (c *Cluster) startNode(ctx context.Context) error {
	// Pods that use the node's DNS settings (CoreDNS itself) get no
	// resolver beyond the cluster.
	if err := os.WriteFile(c.path("config", "resolv.conf"), []byte("nameserver "+DNSServiceIP+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("config", "kubelet.yaml"), []byte(c.kubeletConfig()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("config", "kube-proxy.yaml"), []byte(c.kubeProxyConfig()), 0o644); err != nil {
		return err
	}
	if err := c.startKubelet(ctx); err != nil {
		return err
	}
	return c.start(process{name: "kube-proxy", bin: c.bin("kube-proxy"),
		args: []string{"--config=" + c.path("config", "kube-proxy.yaml")},
		env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}})
}

func (c *Cluster) startKubelet(ctx context.Context) error {
	err := c.start(process{name: "kubelet", bin: c.bin("kubelet"), args: []string{
		"--config=" + c.path("config", "kubelet.yaml"),
		"--kubeconfig=" + c.path("config", "kubelet.kubeconfig"),
		"--root-dir=" + c.path("kubelet"),
		"--hostname-override=" + NodeName,
		"--node-ip=" + NodeIP,
	}, env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "kubelet", 2*time.Minute, "node Ready", func() error {
		out, err := c.Kubectl(ctx, "", "get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "True" {
			return fmt.Errorf("the node's Ready condition is %q", out)
		}
		return nil
	})
}

// RestartNode stops the node as a reboot would (the kubelet, containerd,
// and every container with its shim) and starts containerd and the kubelet
// again; it returns once the node is Ready.
func (c *Cluster) RestartNode(ctx context.Context) error {
	c.stop("kubelet", 30*time.Second)
	c.killContainers()
	c.stop("containerd", 30*time.Second)
	c.unmountUnder(filepath.Join(runDir, "containerd"))
	if err := c.startContainerdProcess(ctx); err != nil {
		return err
	}
	return c.startKubelet(ctx)
}

func b64(b []byte) string {
	return base64Encoding.EncodeToString(b)
}
