package cluster_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/privateapps-dev/privateapp-operator/test/cluster"
)

// The cluster suite runs the operator as platform teams do: the image and
// the chart on a real single-node cluster (test/cluster), driven only as a
// user would, with helm, kubectl and HTTP to Services. One cluster serves
// every step of TestChartOnARealNode, in order.

const (
	release   = "privateapp-operator"
	namespace = "privateapp-system"
	// image is the name the chart's default values pull (its appVersion);
	// nextImage is the same code under another tag, for the upgrade.
	image     = "ghcr.io/privateapps-dev/privateapp-operator:0.1.0"
	nextImage = "ghcr.io/privateapps-dev/privateapp-operator:0.1.0-next"
	// podsReadyBound is how long a default install may take until every pod
	// of the three Deployments is Ready (measured: see docs/install.md).
	podsReadyBound = 3 * time.Minute
)

var (
	repo string
	c    *cluster.Cluster
	helm string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repo = filepath.Join(filepath.Dir(file), "..", "..")
	helm = filepath.Join(repo, "bin", "tools", "helm")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	archive := filepath.Join(repo, "bin", "image", "cluster-test.tar")
	build := exec.CommandContext(ctx, "go", "run", "./hack/image", "--tag", image, "--out", archive)
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "make image: %v\n%s", err, out)
		return 1
	}
	cfg := cluster.Config{
		Dir:    filepath.Join(repo, "bin", "cluster"),
		Bin:    filepath.Join(repo, "bin", "k8s"),
		Images: []string{archive},
		Log:    os.Stderr,
	}
	var host cluster.HostState
	if opened, err := cluster.Open(cfg); err == nil {
		host = opened.ReadHostState()
	}
	var err error
	c, err = cluster.Up(ctx, cfg)
	if err == nil {
		err = c.TagImage(ctx, image, nextImage)
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
	} else {
		code = m.Run()
	}
	if c != nil {
		if os.Getenv("PRIVATEAPPS_KEEP_CLUSTER") != "" {
			fmt.Fprintf(os.Stderr, "cluster kept (PRIVATEAPPS_KEEP_CLUSTER): KUBECONFIG=%s; make cluster-down removes it\n", c.Kubeconfig)
		} else if err := c.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster down:", err)
			code = 1
		} else if diffs := c.ReadHostState().Diff(host); len(diffs) > 0 {
			// make cluster-down must leave the host as Up found it.
			fmt.Fprintf(os.Stderr, "the host differs after the cluster is down:\n  %s\n", strings.Join(diffs, "\n  "))
			code = 1
		}
	}
	return code
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(context.Background(), "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func apply(t *testing.T, manifest string) {
	t.Helper()
	if _, err := c.Kubectl(context.Background(), manifest, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

func runHelm(t *testing.T, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(helm, append(args, "--kubeconfig", c.Kubeconfig)...)
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helm %s: %v\n%s\n%s", strings.Join(args, " "), err, out, podReport())
	}
	return time.Since(start)
}

// podReport says what the release's pods are doing, for failures.
func podReport() string {
	out, _ := c.Kubectl(context.Background(), "", "get", "pods", "-n", namespace, "-o", "wide")
	events, _ := c.Kubectl(context.Background(), "", "get", "events", "-n", namespace, "--sort-by=.lastTimestamp")
	lines := strings.Split(events, "\n")
	return out + "\n" + strings.Join(lines[max(0, len(lines)-20):], "\n")
}

func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v\n%s", what, timeout, err, podReport())
		}
		time.Sleep(time.Second)
	}
}

// pod is what the suite reads of a pod.
type pod struct {
	Metadata struct {
		Name              string            `json:"name"`
		Labels            map[string]string `json:"labels"`
		DeletionTimestamp string            `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		Containers []struct {
			Image string `json:"image"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase      string `json:"phase"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		ContainerStatuses []struct {
			RestartCount int    `json:"restartCount"`
			Ready        bool   `json:"ready"`
			ContainerID  string `json:"containerID"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

func pods(t *testing.T, selector string) []pod {
	t.Helper()
	var list struct {
		Items []pod `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, "get", "pods", "-n", namespace, "-l", selector, "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func (p pod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

func (p pod) restarts() int {
	n := 0
	for _, s := range p.Status.ContainerStatuses {
		n += s.RestartCount
	}
	return n
}

// allReady checks that the three Deployments have their replicas (2
// controllers, 2 token services, 1 insights) Ready and nothing else.
func allReady(t *testing.T) error {
	want := map[string]int{"controller": 2, "token-service": 2, "insights": 1}
	got := map[string]int{}
	for _, p := range pods(t, "app.kubernetes.io/instance="+release) {
		if !p.ready() {
			return fmt.Errorf("pod %s is not Ready (%s)", p.Metadata.Name, p.Status.Phase)
		}
		got[p.Metadata.Labels["app.kubernetes.io/component"]]++
	}
	for k, n := range want {
		if got[k] != n {
			return fmt.Errorf("%d %s pods Ready, want %d", got[k], k, n)
		}
	}
	return nil
}

// tokenDigests returns the SHA-256 of every token of the sample apps'
// Secrets, so that a step can show that no token changed without ever
// printing one.
func tokenDigests(t *testing.T) map[string]string {
	t.Helper()
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Data map[string]string `json:"data"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, "get", "secrets", "-n", "default", "--field-selector", "type=privateapps.dev/access-token", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	for _, s := range list.Items {
		b, _ := base64.StdEncoding.DecodeString(s.Data["token"])
		sum := sha256.Sum256(b)
		digests[s.Metadata.Name] = hex.EncodeToString(sum[:8])
	}
	if len(digests) == 0 {
		t.Fatal("no app Secret in namespace default")
	}
	return digests
}

func sameTokens(t *testing.T, before map[string]string, when string) {
	t.Helper()
	after := tokenDigests(t)
	for name, d := range before {
		if after[name] != d {
			t.Errorf("%s: the token of Secret default/%s changed (digest %s, was %s)", when, name, after[name], d)
		}
	}
}

// checker checks one token through the token service's Service
// continuously, as a gateway does, and counts what it sees. A request
// that gets no answer is sent again (up to three times), as gateways retry
// a connection error; one that still gets none counts as failed. Go's
// transport itself sends a request again, unseen here, when a kept-alive
// connection was closed by the server before the request went out.
type checker struct {
	ok, refused, retried, failed atomic.Int64
	mu                           sync.Mutex
	codes                        []int
	errs                         []string
	stop                         context.CancelFunc
	done                         chan struct{}
}

func startChecks(t *testing.T, token string) *checker {
	t.Helper()
	ts, err := cluster.TokenService(context.Background(), c, namespace, release)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &checker{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		for ctx.Err() == nil {
			var code int
			var err error
			for attempt := range 4 {
				if attempt > 0 {
					k.retried.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
				if code, err = ts.Check(ctx, token, "GET", "/crm/v3/objects/contacts"); err == nil || ctx.Err() != nil {
					break
				}
			}
			switch {
			case ctx.Err() != nil:
			case err != nil:
				k.failed.Add(1)
				k.mu.Lock()
				k.errs = append(k.errs, err.Error())
				k.mu.Unlock()
			case code == 200:
				k.ok.Add(1)
			default:
				k.refused.Add(1)
				k.mu.Lock()
				k.codes = append(k.codes, code)
				k.mu.Unlock()
			}
			// About 7 checks a second: under the app's 10-second limit,
			// which a 429 would otherwise count against the test.
			time.Sleep(130 * time.Millisecond)
		}
	}()
	return k
}

// end stops the checks and fails the test if a valid token was refused or
// a check got no answer after its retries.
func (k *checker) end(t *testing.T, during string) {
	t.Helper()
	k.stop()
	<-k.done
	t.Logf("%s: %d checks answered 200, %d refused, %d connection errors retried, %d without an answer", during, k.ok.Load(), k.refused.Load(), k.retried.Load(), k.failed.Load())
	if k.ok.Load() == 0 {
		t.Errorf("%s: no check was answered 200", during)
	}
	if k.refused.Load() > 0 {
		t.Errorf("%s: a valid token was refused %d times (first codes %v)", during, k.refused.Load(), k.codes[:min(10, len(k.codes))])
	}
	if k.failed.Load() > 0 {
		t.Errorf("%s: %d checks got no answer after three retries: %v", during, k.failed.Load(), k.errs[:min(3, len(k.errs))])
	}
	// The pods' shutdown delay (shutdownDelaySeconds) keeps a leaving pod
	// serving until kube-proxy has stopped sending it connections: without
	// it this saw 1-3 connection errors per deleted pod.
	if k.retried.Load() > 0 {
		t.Errorf("%s: %d checks met a connection error (answered on a retry)", during, k.retried.Load())
	}
}

// webhookProbe makes server-side dry-run creates of a PrivateApp in a loop:
// each passes the mutating and validating webhooks (failurePolicy Fail),
// which the controller pods serve; the mutating one records who installs
// the app.
type webhookProbe struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       context.CancelFunc
	done       chan struct{}
}

const dryRunApp = `apiVersion: privateapps.dev/v1alpha1
kind: PrivateApp
metadata: {name: webhook-probe, namespace: default}
spec:
  displayName: Webhook probe
  scopes: [crm.objects.contacts.read]
`

func startWebhookProbe() *webhookProbe {
	ctx, cancel := context.WithCancel(context.Background())
	w := &webhookProbe{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			out, err := c.Kubectl(ctx, dryRunApp, "create", "--dry-run=server", "-f", "-", "-o", `jsonpath={.metadata.annotations.privateapps\.dev/installed-by}`)
			switch {
			case ctx.Err() != nil:
			case err != nil || strings.TrimSpace(out) == "":
				w.failed.Add(1)
				w.mu.Lock()
				w.errs = append(w.errs, fmt.Sprint(err, " installed-by=", out))
				w.mu.Unlock()
			default:
				w.ok.Add(1)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return w
}

func (w *webhookProbe) end(t *testing.T, during string) {
	t.Helper()
	w.stop()
	<-w.done
	t.Logf("%s: the webhooks answered %d dry-run creates, %d failed", during, w.ok.Load(), w.failed.Load())
	if w.ok.Load() == 0 {
		t.Errorf("%s: no dry-run create passed the webhooks", during)
	}
	if w.failed.Load() > 0 {
		t.Errorf("%s: %d dry-run creates failed: %v", during, w.failed.Load(), w.errs[:min(3, len(w.errs))])
	}
}

func caBundles(t *testing.T) map[string]string {
	t.Helper()
	bundles := map[string]string{}
	for _, kind := range []string{"mutatingwebhookconfiguration", "validatingwebhookconfiguration"} {
		out := kubectl(t, "get", kind, release, "-o", `jsonpath={range .webhooks[*]}{.name}={.clientConfig.caBundle}{"\n"}{end}`)
		for _, line := range strings.Split(out, "\n") {
			name, bundle, _ := strings.Cut(line, "=")
			bundles[kind+"/"+name] = bundle
		}
	}
	out := kubectl(t, "get", "apiservice", "v1alpha1.insights.privateapps.dev", "-o", `jsonpath={.spec.caBundle}`)
	bundles["apiservice"] = out
	return bundles
}

// verifies checks that the certificate in Secret name (tls.crt) was issued
// by a CA of bundle (base64 PEM).
func verifies(t *testing.T, secret, bundle string) error {
	t.Helper()
	pemBundle, err := base64.StdEncoding.DecodeString(bundle)
	if err != nil || len(pemBundle) == 0 {
		return fmt.Errorf("empty or unreadable CA bundle for %s", secret)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBundle) {
		return fmt.Errorf("no certificate in the CA bundle for %s", secret)
	}
	crtB64 := kubectl(t, "get", "secret", secret, "-n", namespace, "-o", `jsonpath={.data.tls\.crt}`)
	crtPEM, err := base64.StdEncoding.DecodeString(crtB64)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(crtPEM)
	if block == nil {
		return fmt.Errorf("secret %s holds no certificate", secret)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func TestChartOnARealNode(t *testing.T) {
	ctx := context.Background()

	t.Run("an unused ClusterIP fails at once on the host", func(t *testing.T) {
		// Nothing of the cluster may leave the machine: a ClusterIP that
		// kube-proxy did not program is refused on the host, at once.
		start := time.Now()
		conn, err := net.DialTimeout("tcp", "10.96.254.254:443", 5*time.Second)
		if err == nil {
			conn.Close()
			t.Fatal("a connection to an unused ClusterIP succeeded")
		}
		if !strings.Contains(err.Error(), "unreachable") && !strings.Contains(err.Error(), "no route") {
			t.Errorf("a connection to an unused ClusterIP failed with %v, want unreachable or no route", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("a connection to an unused ClusterIP took %s to fail", d)
		}
	})

	t.Run("helm install with default values", func(t *testing.T) {
		took := runHelm(t, "install", release, "charts/privateapp-operator", "--namespace", namespace, "--create-namespace", "--wait", "--timeout", podsReadyBound.String())
		if err := allReady(t); err != nil {
			t.Fatalf("after helm install --wait: %v\n%s", err, podReport())
		}
		t.Logf("helm install --wait: every pod Ready in %s (bound %s)", took.Round(time.Second), podsReadyBound)
		for _, p := range pods(t, "app.kubernetes.io/instance="+release) {
			if p.restarts() > 0 {
				t.Errorf("pod %s restarted %d times", p.Metadata.Name, p.restarts())
			}
			if img := p.Spec.Containers[0].Image; img != image {
				t.Errorf("pod %s runs %s, want the chart's default %s", p.Metadata.Name, img, image)
			}
		}
		// The operator's own CA issued the serving certificates and its
		// bundle is in every webhook configuration and the APIService.
		bundles := caBundles(t)
		for where, bundle := range bundles {
			secret := release + "-webhook-tls"
			if where == "apiservice" {
				secret = release + "-insights-tls"
			}
			if err := verifies(t, secret, bundle); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
		tsCA := kubectl(t, "get", "secret", release+"-token-service-tls", "-n", namespace, "-o", `jsonpath={.data.ca\.crt}`)
		if err := verifies(t, release+"-token-service-tls", tsCA); err != nil {
			t.Errorf("token service: %v", err)
		}
	})

	var before map[string]string
	t.Run("the samples: admitted by the webhook pod, tokens checked through the Service", func(t *testing.T) {
		kubectl(t, "apply", "--recursive", "-f", filepath.Join(repo, "config", "samples"))
		kubectl(t, "wait", "--for=condition=Ready", "privateapp", "--all", "-n", "default", "--timeout=2m")
		installedBy := kubectl(t, "get", "privateapp", "billing-sync", "-n", "default", "-o", `jsonpath={.status.installedBy}`)
		if installedBy != "privateapps-cluster-admin" {
			t.Errorf("INSTALLED BY is %q, want the admin's name from the webhook", installedBy)
		}
		// HubSpot's numbers, given under the chart's Role from its ConfigMap.
		ids := strings.Fields(kubectl(t, "get", "privateapp", "billing-sync", "-n", "default", "-o", `jsonpath={.status.appId} {.status.hubId} {.status.installedByUserId}`))
		if len(ids) != 3 || slices.Contains(ids, "0") {
			t.Errorf("billing-sync's appId, hubId and installedByUserId: %q, want three numbers", ids)
		}
		if next := kubectl(t, "get", "configmap", release+"-ids", "-n", namespace, "-o", `jsonpath={.data.next}`); next == "" {
			t.Errorf("the id registry ConfigMap %s-ids has no counter", release)
		}
		before = tokenDigests(t)
		token, err := cluster.Token(ctx, c, "default", "billing-sync-token")
		if err != nil {
			t.Fatal(err)
		}
		ts, err := cluster.TokenService(ctx, c, namespace, release)
		if err != nil {
			t.Fatal(err)
		}
		for _, call := range []struct {
			path string
			want int
		}{
			{"/crm/v3/objects/contacts", 200}, // crm.objects.contacts.read: held
			{"/crm/v3/objects/deals", 403},    // crm.objects.deals.read: not held
		} {
			var code int
			eventually(t, time.Minute, "a check through the Service", func() error {
				code, err = ts.Check(ctx, token, "GET", call.path)
				return err
			})
			if code != call.want {
				t.Errorf("GET %s through %s (%s): %d, want %d", call.path, ts.URL, ts.Addr, code, call.want)
			}
		}
	})

	t.Run("a check from a pod through the Service's DNS name", func(t *testing.T) {
		caB64 := kubectl(t, "get", "secret", release+"-token-service-tls", "-n", namespace, "-o", `jsonpath={.data.ca\.crt}`)
		ca, _ := base64.StdEncoding.DecodeString(caB64)
		for i, call := range []struct{ path, want string }{
			{"/crm/v3/objects/contacts", "200"},
			{"/crm/v3/objects/deals", "403"},
		} {
			name := fmt.Sprintf("probe-%d", i)
			apply(t, probeJob(name, string(ca), call.path))
			kubectl(t, "wait", "--for=condition=Complete", "job/"+name, "-n", "default", "--timeout=2m")
			if got := kubectl(t, "logs", "job/"+name, "-n", "default"); got != call.want {
				t.Errorf("a pod's check of GET %s: %q, want %s", call.path, got, call.want)
			}
		}
	})

	t.Run("kubectl get calls through the APIService, from SQLite on the PVC", func(t *testing.T) {
		eventually(t, time.Minute, "the calls in the call log", func() error {
			out, err := c.Kubectl(ctx, "", "get", "calls", "-n", "default", "--field-selector", "app=billing-sync", "-o", `jsonpath={range .items[*]}{.code} {.path}{"\n"}{end}`)
			if err != nil {
				return err
			}
			for _, want := range []string{"200 /crm/v3/objects/contacts", "403 /crm/v3/objects/deals"} {
				if !strings.Contains(out, want) {
					return fmt.Errorf("no call %q in %q", want, out)
				}
			}
			return nil
		})
		pvc := kubectl(t, "get", "pvc", release+"-insights", "-n", namespace, "-o", `jsonpath={.status.phase}`)
		if pvc != "Bound" {
			t.Errorf("the insights PVC is %s", pvc)
		}
		entries, _ := filepath.Glob(filepath.Join(repo, "bin", "cluster", "volumes", "*", "calls.db"))
		if len(entries) != 1 {
			t.Errorf("the call log's SQLite file is not on a local volume: %v", entries)
		}
	})

	t.Run("metrics only for scrapers with the metrics-reader role", func(t *testing.T) {
		// Each component asks the kube-apiserver who a scraper is and
		// whether it may get /metrics: the chart's RBAC must let all three.
		kubectl(t, "create", "serviceaccount", "scraper", "-n", "default")
		kubectl(t, "create", "serviceaccount", "stranger", "-n", "default")
		kubectl(t, "create", "clusterrolebinding", "scraper-metrics", "--clusterrole="+release+"-metrics-reader", "--serviceaccount=default:scraper")
		scraper := kubectl(t, "create", "token", "scraper", "-n", "default")
		stranger := kubectl(t, "create", "token", "stranger", "-n", "default")
		for _, component := range []string{"controller", "token-service", "insights"} {
			svc := release + "-" + component + "-metrics"
			addr := kubectl(t, "get", "service", svc, "-n", namespace, "-o", `jsonpath={.spec.clusterIP}:{.spec.ports[0].port}`)
			for _, tc := range []struct {
				who, token string
				want       int
			}{
				{"the scraper", scraper, 200},
				{"a ServiceAccount without the role", stranger, 403},
				{"no token", "", 401},
			} {
				var code int
				var body string
				eventually(t, time.Minute, svc+" answers", func() error {
					var err error
					code, body, err = cluster.Scrape(ctx, addr, tc.token)
					return err
				})
				if code != tc.want || (tc.want == 200) != strings.Contains(body, "privateapps_") {
					t.Errorf("%s, %s: %d, want %d (metrics only with 200)", svc, tc.who, code, tc.want)
				}
			}
		}
	})

	t.Run("the leader pod deleted: the other replica takes over", func(t *testing.T) {
		holder := kubectl(t, "get", "lease", "privateapp-operator.privateapps.dev", "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}")
		leader, _, _ := strings.Cut(holder, "_")
		if leader == "" {
			t.Fatalf("no leader in the Lease: %q", holder)
		}
		// The pod keeps leading through its shutdown delay; once it is gone,
		// only the other replica can issue the token.
		start := time.Now()
		kubectl(t, "delete", "pod", leader, "-n", namespace, "--wait=true", "--timeout=2m")
		apply(t, strings.ReplaceAll(dryRunApp, "webhook-probe", "after-failover"))
		kubectl(t, "wait", "--for=condition=Ready", "privateapp/after-failover", "-n", "default", "--timeout=3m")
		t.Logf("the leader %s deleted: a new app had its token %s later", leader, time.Since(start).Round(time.Second))
		if newHolder := kubectl(t, "get", "lease", "privateapp-operator.privateapps.dev", "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}"); strings.HasPrefix(newHolder, leader+"_") {
			t.Errorf("the deleted pod %s still holds the Lease", leader)
		}
		if _, err := cluster.Token(ctx, c, "default", "after-failover-token"); err != nil {
			t.Error(err)
		}
		kubectl(t, "delete", "privateapp", "after-failover", "-n", "default")
		eventually(t, 2*time.Minute, "the controllers Ready again", func() error { return allReady(t) })
	})

	t.Run("a token-service pod deleted while a client checks", func(t *testing.T) {
		token, err := cluster.Token(ctx, c, "default", "billing-sync-token")
		if err != nil {
			t.Fatal(err)
		}
		k := startChecks(t, token)
		time.Sleep(2 * time.Second)
		victim := pods(t, "app.kubernetes.io/component=token-service")[0].Metadata.Name
		kubectl(t, "delete", "pod", victim, "-n", namespace)
		eventually(t, 2*time.Minute, "two token services Ready", func() error { return allReady(t) })
		time.Sleep(3 * time.Second)
		k.end(t, "token-service pod "+victim+" deleted")
	})

	t.Run("helm upgrade to another image while gateways check", func(t *testing.T) {
		token, err := cluster.Token(ctx, c, "default", "billing-sync-token")
		if err != nil {
			t.Fatal(err)
		}
		bundles := caBundles(t)
		k := startChecks(t, token)
		w := startWebhookProbe()
		took := runHelm(t, "upgrade", release, "charts/privateapp-operator", "--namespace", namespace, "--set", "image.tag="+strings.TrimPrefix(nextImage, strings.Split(nextImage, ":")[0]+":"), "--wait", "--timeout", podsReadyBound.String())
		time.Sleep(3 * time.Second)
		k.end(t, "helm upgrade")
		w.end(t, "helm upgrade")
		t.Logf("helm upgrade --wait took %s", took.Round(time.Second))
		for _, p := range pods(t, "app.kubernetes.io/instance="+release) {
			if img := p.Spec.Containers[0].Image; img != nextImage && p.Metadata.DeletionTimestamp == "" {
				t.Errorf("after the upgrade pod %s runs %s", p.Metadata.Name, img)
			}
		}
		if after := caBundles(t); !mapsEqual(after, bundles) {
			t.Error("the upgrade changed a CA bundle")
		}
		sameTokens(t, before, "after helm upgrade")
	})

	t.Run("the node restarted: pods come back, no token re-issued", func(t *testing.T) {
		containers := map[string]string{}
		for _, p := range pods(t, "app.kubernetes.io/instance="+release) {
			containers[p.Metadata.Name] = p.Status.ContainerStatuses[0].ContainerID
		}
		start := time.Now()
		if err := c.RestartNode(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, 4*time.Minute, "every pod in a new container and Ready after the node restarted", func() error {
			for _, p := range pods(t, "app.kubernetes.io/instance="+release) {
				if id := p.Status.ContainerStatuses[0].ContainerID; id == containers[p.Metadata.Name] {
					return fmt.Errorf("pod %s still shows its container from before the restart", p.Metadata.Name)
				}
			}
			return allReady(t)
		})
		t.Logf("node restarted (containers killed): every pod Ready %s later", time.Since(start).Round(time.Second))
		sameTokens(t, before, "after the node restarted")
		token, err := cluster.Token(ctx, c, "default", "billing-sync-token")
		if err != nil {
			t.Fatal(err)
		}
		ts, err := cluster.TokenService(ctx, c, namespace, release)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "a 200 check after the restart", func() error {
			code, err := ts.Check(ctx, token, "GET", "/crm/v3/objects/contacts")
			if err == nil && code != 200 {
				err = fmt.Errorf("answer %d", code)
			}
			return err
		})
	})

	t.Run("helm uninstall keeps CRDs, apps and Secrets; a new install adopts them", func(t *testing.T) {
		runHelm(t, "uninstall", release, "--namespace", namespace, "--wait")
		if crd := kubectl(t, "get", "crd", "privateapps.privateapps.dev", "-o", "name"); crd == "" {
			t.Fatal("the PrivateApp CRD went with the release")
		}
		apps := kubectl(t, "get", "privateapps", "-n", "default", "-o", "name")
		for _, app := range []string{"billing-sync", "crm-reporting", "warehouse-sync"} {
			if !strings.Contains(apps, "privateapp.privateapps.dev/"+app) {
				t.Errorf("app %s went with the release: %q", app, apps)
			}
		}
		sameTokens(t, before, "after helm uninstall")
		runHelm(t, "install", release, "charts/privateapp-operator", "--namespace", namespace, "--wait", "--timeout", podsReadyBound.String())
		kubectl(t, "wait", "--for=condition=Ready", "privateapp", "--all", "-n", "default", "--timeout=2m")
		sameTokens(t, before, "after a new install")
		token, err := cluster.Token(ctx, c, "default", "billing-sync-token")
		if err != nil {
			t.Fatal(err)
		}
		ts, err := cluster.TokenService(ctx, c, namespace, release)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "a 200 check after the new install", func() error {
			code, err := ts.Check(ctx, token, "GET", "/crm/v3/objects/contacts")
			if err == nil && code != 200 {
				err = fmt.Errorf("answer %d", code)
			}
			return err
		})
		// The kept PVC is adopted: the calls before the uninstall are there.
		out := kubectl(t, "get", "calls", "-n", "default", "--field-selector", "app=billing-sync", "-o", `jsonpath={range .items[*]}{.path}{"\n"}{end}`)
		if !strings.Contains(out, "/crm/v3/objects/deals") {
			t.Errorf("the call log lost the calls made before the uninstall: %q", out)
		}
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// probeJob is a Job that checks the billing-sync token from a pod, through
// the token service's Service by its DNS name, and prints the answer's
// status code.
func probeJob(name, ca, path string) string {
	indented := "    " + strings.ReplaceAll(strings.TrimSpace(ca), "\n", "\n    ")
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: %[1]s, namespace: default}
data:
  ca.crt: |
%[2]s
---
apiVersion: batch/v1
kind: Job
metadata: {name: %[1]s, namespace: default}
spec:
  backoffLimit: 3
  template:
    spec:
      restartPolicy: Never
      securityContext: {runAsNonRoot: true, runAsUser: 65532}
      containers:
      - name: check
        image: %[3]s
        imagePullPolicy: Never
        args: [check, "https://%[4]s-token-service.%[5]s.svc:8443/v1/check", /ca/ca.crt, /token/token, GET, %[6]q, %[7]s]
        volumeMounts:
        - {name: ca, mountPath: /ca}
        - {name: token, mountPath: /token}
      volumes:
      - name: ca
        configMap: {name: %[1]s}
      - name: token
        secret: {secretName: billing-sync-token}
`, name, indented, cluster.ProbeImage, release, namespace, path, cluster.GatewayHost)
}
