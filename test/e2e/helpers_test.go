package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/insights/insightstest"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// startControlPlane starts envtest with the CRDs (configure, if given, may
// set kube-apiserver flags first) and returns it, a client and a kubeconfig
// file with which the components reach it (test/framework's control plane,
// which make dev and the benchmarks run too).
func startControlPlane(t *testing.T, root, dir string, configure ...func(*envtest.Environment)) (*envtest.Environment, client.WithWatch, string) {
	t.Helper()
	cp, err := framework.StartControlPlane(framework.ControlPlaneOptions{
		CRDs: filepath.Join(root, "config", "crd", "bases"), Assets: assets(root), Kubeconfig: filepath.Join(dir, "kubeconfig"), User: "e2e-manager",
		Configure: func(env *envtest.Environment) error {
			for _, f := range configure {
				f(env)
			}
			return nil
		},
	})
	must(t, err)
	t.Cleanup(func() { _ = cp.Stop() })
	return cp.Env, cp.Client, cp.Kubeconfig
}

// createReadyApp creates an app, waits until it is Ready, and returns it with
// its token's text.
func createReadyApp(t *testing.T, ctx context.Context, c client.Client, ns, name string, scopes ...string) (*v1alpha1.PrivateApp, string) {
	t.Helper()
	app := &v1alpha1.PrivateApp{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.PrivateAppSpec{DisplayName: name, Scopes: scopes},
	}
	must(t, c.Create(ctx, app))
	waitUntil(t, ctx, ns+"/"+name+" is Ready", func() bool {
		return c.Get(ctx, client.ObjectKeyFromObject(app), app) == nil &&
			meta.IsStatusConditionTrue(app.Status.Conditions, v1alpha1.ConditionReady)
	})
	return app, appToken(t, ctx, c, app)
}

// appToken is the token in app's Secret (status.secretName).
func appToken(t *testing.T, ctx context.Context, c client.Client, app *v1alpha1.PrivateApp) string {
	t.Helper()
	s := &corev1.Secret{}
	must(t, c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: app.Status.SecretName}, s))
	return string(s.Data[v1alpha1.SecretTokenKey])
}

// componentProcess is one component of the operator (the manager, the token
// service or the insights component) run by a test as a process of its own.
type componentProcess struct {
	t                    *testing.T
	bin, kubeconfig, log string
	args                 []string
	p                    *framework.Process
}

func (m *componentProcess) start() {
	m.t.Helper()
	m.p = &framework.Process{Bin: m.bin, Args: append([]string{"--health-probe-bind-address=0"}, m.args...), Kubeconfig: m.kubeconfig, Log: m.log}
	must(m.t, m.p.Start())
}

func (m *componentProcess) kill() {
	if m.p != nil {
		m.p.Kill()
	}
}

// waitLogged waits until the process, since it last started, has logged a
// line that contains what.
func (m *componentProcess) waitLogged(ctx context.Context, what string) {
	m.t.Helper()
	waitUntil(m.t, ctx, fmt.Sprintf("%s logs %q", filepath.Base(m.log), what), func() bool { return m.p.Logged(what) })
}

// commands are the operator's commands, built once per test run into
// bin/e2e.
func commands(t *testing.T) framework.Commands {
	t.Helper()
	root := repoRoot(t)
	c, err := framework.Build(root, filepath.Join(root, "bin", "e2e"))
	must(t, err)
	return c
}

func waitUntil(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkStatus calls /v1/check of a plain-HTTP token service with a token,
// as nginx asks about GET /crm/v3/objects/contacts/1 (a route of the sample
// APICatalog, which needs crm.objects.contacts.read), and returns the
// status code (0 when the call fails).
func checkStatus(addr, tok string) int {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/check", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-URL", "https://api.example.com/crm/v3/objects/contacts/1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// createRendered creates the named objects (Kind/name) of a chart
// rendering, failing when the chart does not render one; namespaced kinds
// the rendering leaves without a namespace go into ns.
func createRendered(t *testing.T, ctx context.Context, c client.Client, objs map[string]*unstructured.Unstructured, ns string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if objs[k] == nil {
			t.Fatalf("the chart renders no %s; got %v", k, kinds(objs))
		}
		if objs[k].GetKind() == "ServiceAccount" && objs[k].GetNamespace() == "" {
			objs[k].SetNamespace(ns)
		}
		must(t, c.Create(ctx, objs[k]))
	}
}

// asServiceAccount returns a token of the ServiceAccount ns/name (an hour
// long) and a client that presents only it to env's API server.
func asServiceAccount(t *testing.T, ctx context.Context, env *envtest.Environment, c client.Client, ns, name string) (string, client.Client) {
	t.Helper()
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	must(t, c.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, tr))
	cfg := rest.CopyConfig(env.Config)
	cfg.CertData, cfg.KeyData, cfg.BearerToken = nil, nil, tr.Status.Token
	sc, err := client.New(cfg, client.Options{Scheme: c.Scheme()})
	must(t, err)
	return tr.Status.Token, sc
}

// startManager starts the manager (the controllers) with args, as the
// chart runs it beside the token service; it is killed when the test ends.
func startManager(t *testing.T, kubeconfig, log string, args ...string) *componentProcess {
	t.Helper()
	m := &componentProcess{t: t, bin: commands(t).Path(framework.Manager), kubeconfig: kubeconfig, log: log, args: args}
	m.start()
	t.Cleanup(m.kill)
	return m
}

// insightsProcess is the insights component run by a test, as the chart
// runs it: its SQLite call log in the test's directory, the insights API
// on a port of its own, and the ingest endpoint that token services send
// their decisions to.
type insightsProcess struct {
	*componentProcess
	// secure is the insights API's host:port; ingest the ingest
	// endpoint's.
	secure, ingest string
	// caPEM verifies both (serving certificate for
	// privateapp-insights.privateapp-system.svc and localhost).
	caPEM []byte
	// tokenServiceArgs are the flags a token service sends its decisions
	// here with.
	tokenServiceArgs []string
}

// startInsights starts the insights component with extra args; it is
// killed when the test ends.
func startInsights(t *testing.T, kubeconfig, dir string, args ...string) *insightsProcess {
	t.Helper()
	certFile, keyFile, caPEM, err := insightstest.ServingCert(dir, "privateapp-insights.privateapp-system.svc")
	must(t, err)
	secret := filepath.Join(dir, "token-service-secret")
	must(t, os.WriteFile(secret, []byte("the-token-services-secret-of-this-test\n"), 0o600))
	caFile := filepath.Join(dir, "insights-ca.crt")
	must(t, os.WriteFile(caFile, caPEM, 0o600))
	p := &insightsProcess{secure: freeAddress(t), ingest: freeAddress(t), caPEM: caPEM}
	_, securePort, _ := net.SplitHostPort(p.secure)
	_, ingestPort, _ := net.SplitHostPort(p.ingest)
	p.componentProcess = &componentProcess{t: t, bin: commands(t).Path(framework.Insights), kubeconfig: kubeconfig, log: filepath.Join(dir, "insights.log"),
		args: append([]string{"--bind-address=127.0.0.1", "--secure-port=" + securePort, "--tls-cert-file=" + certFile, "--tls-private-key-file=" + keyFile,
			"--call-log-sqlite=" + filepath.Join(dir, "calls.db"), "--call-log-ingest-bind-address=" + p.ingest,
			"--call-log-token-service-token-file=" + secret}, args...)}
	p.tokenServiceArgs = []string{"--call-log-url=https://localhost:" + ingestPort, "--call-log-ca-file=" + caFile, "--call-log-token-file=" + secret}
	p.start()
	t.Cleanup(p.kill)
	return p
}
