package insights_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/sqlite"
	"github.com/privateapps-dev/privateapp-operator/internal/insights"
	"github.com/privateapps-dev/privateapp-operator/internal/insights/insightstest"
)

// TestCallsThroughTheAPIServer serves the call log through a real
// kube-apiserver's aggregation layer and reads it as users with their own
// client certificates, so RBAC, the front proxy and delegated
// authentication and authorization are all the real ones.
func TestCallsThroughTheAPIServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	env := &envtest.Environment{BinaryAssetsDirectory: filepath.Join("..", "..", "bin", "k8s"),
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	if os.Getenv("KUBEBUILDER_ASSETS") != "" {
		env.BinaryAssetsDirectory = ""
	}
	if err := insightstest.EnableAggregation(env, dir); err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiregistrationv1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	// The insights server authenticates and authorizes through the API
	// server with a kubeconfig of its own.
	serverUser, err := env.AddUser(envtest.User{Name: "insights-server", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeKubeconfig(t, serverUser, dir, "server")
	store, err := sqlite.Open(ctx, filepath.Join(dir, "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	entries := []calllog.Entry{
		{ID: "a1", Time: now.Add(-3 * time.Minute), Namespace: "team-a", App: "billing-sync", Method: "GET", Path: "/crm/v3/objects/contacts/1", Route: "crm/contacts-get", Code: 200, DecidedBy: calllog.DecidedByUpstream, Latency: 12 * time.Millisecond, Source: calllog.SourceGateway, Final: true},
		{ID: "a2", Time: now.Add(-2 * time.Minute), Namespace: "team-a", App: "billing-sync", Method: "GET", Path: "/crm/v3/objects/deals/7", Query: "archived=false", Code: 403, DecidedBy: calllog.DecidedByTokenService, Reason: "missing_scope", Source: calllog.SourceGateway, Final: true},
		{ID: "a3", Time: now.Add(-time.Minute), Namespace: "team-a", App: "crm-reporting", Method: "POST", Path: "/crm/v3/objects/contacts/batch/read", Code: 502, DecidedBy: calllog.DecidedByUpstream, Source: calllog.SourceGateway, Final: true},
		{ID: "old", Time: now.Add(-48 * time.Hour), Namespace: "team-a", App: "billing-sync", Method: "GET", Path: "/crm/v3/objects/contacts/2", Code: 200, DecidedBy: calllog.DecidedByUpstream, Source: calllog.SourceGateway, Final: true},
		{ID: "b1", Time: now.Add(-time.Minute), Namespace: "team-b", App: "warehouse-sync", Method: "PATCH", Path: "/crm/v3/objects/products/3", Code: 200, DecidedBy: calllog.DecidedByUpstream, Source: calllog.SourceGateway, Final: true},
	}
	for i := range entries {
		entries[i].Normalize()
	}
	if err := store.Write(ctx, entries); err != nil {
		t.Fatal(err)
	}

	addr := freeAddress(t)
	const namespace, service = "privateapp-system", "privateapp-insights"
	certFile, keyFile, caPEM, err := insightstest.ServingCert(dir, service+"."+namespace+".svc")
	if err != nil {
		t.Fatal(err)
	}
	serving, authn, authz := insights.NewServingOptions(dir)
	host, port, _ := net.SplitHostPort(addr)
	serving.BindAddress = net.ParseIP(host)
	serving.BindPort, err = strconv.Atoi(port)
	must(t, err)
	serving.ServerCert.CertKey.CertFile, serving.ServerCert.CertKey.KeyFile = certFile, keyFile
	authn.RemoteKubeConfigFile, authz.RemoteKubeConfigFile = kubeconfig, kubeconfig
	srv, err := insights.New(insights.Options{Serving: serving, Authentication: authn, Authorization: authz, Store: store,
		Apps: admin, Log: logr.Discard(), MaxRecordRows: 200})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Start(ctx) }()
	if err := insightstest.Register(ctx, admin, namespace, service, port, caPEM); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		must(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	reader := &rbacv1.ClusterRole{}
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "privateapps_insights_reader_role.yaml"))
	must(t, err)
	must(t, yaml.Unmarshal(data, reader))
	must(t, admin.Create(ctx, reader))
	view := &rbacv1.ClusterRole{}
	data, err = os.ReadFile(filepath.Join("..", "..", "config", "rbac", "privateapps_view_role.yaml"))
	must(t, err)
	must(t, yaml.Unmarshal(data, view))
	must(t, admin.Create(ctx, view))
	bind := func(user, role string) {
		must(t, admin.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role, Namespace: "team-a"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
		}))
	}
	viewer := &rbacv1.ClusterRole{}
	data, err = os.ReadFile(filepath.Join("..", "..", "config", "rbac", "privateapps_insights_viewer_role.yaml"))
	must(t, err)
	must(t, yaml.Unmarshal(data, viewer))
	must(t, admin.Create(ctx, viewer))
	// envtest runs no controller-manager to aggregate roles: each is bound
	// as the aggregation would (the viewer role into admin, edit and view).
	bind("alice", reader.Name)
	bind("alice", viewer.Name)
	bind("victor", view.Name)
	bind("victor", viewer.Name)
	alice := userConfig(t, env, "alice")
	victor := userConfig(t, env, "victor")
	v := &views{admin: admin, adminCfg: cfg, alice: alice, victor: victor, mallory: userConfig(t, env, "mallory"),
		aliceKubeconfig: writeKubeconfig(t, mustUser(t, env, "alice"), dir, "alice-views"), now: now}

	list := func(cfg *rest.Config, ns, selector string) (*insightsv1alpha1.CallList, error) {
		path := "/apis/insights.privateapps.dev/v1alpha1/namespaces/" + ns + "/calls"
		if ns == "" {
			path = "/apis/insights.privateapps.dev/v1alpha1/calls"
		}
		raw, err := get(ctx, cfg, path, selector, "")
		if err != nil {
			return nil, err
		}
		l := &insightsv1alpha1.CallList{}
		return l, json.Unmarshal(raw, l)
	}
	names := func(l *insightsv1alpha1.CallList) string {
		var out []string
		for _, c := range l.Items {
			out = append(out, c.Name)
		}
		return strings.Join(out, ",")
	}

	// Alice may read team-a's log, newest first, within the last day by default.
	var calls *insightsv1alpha1.CallList
	deadline := time.Now().Add(60 * time.Second)
	for calls, err = list(alice, "team-a", ""); err != nil; calls, err = list(alice, "team-a", "") {
		if time.Now().After(deadline) {
			t.Fatalf("the aggregated API did not answer within a minute: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := names(calls); got != "a3,a2,a1" {
		t.Errorf("alice lists team-a's calls %q, want a3,a2,a1", got)
	}
	for selector, want := range map[string]string{
		"app=billing-sync":                    "a2,a1",
		"code=4xx":                            "a2",
		"code=502":                            "a3",
		"method=post":                         "a3",
		"url=contacts":                        "a3,a1",
		`url=archived\=false`:                 "a2",
		"since=3d":                            "a3,a2,a1,old",
		"since=3d,until=1h":                   "old",
		"app=billing-sync,code=2xx,since=30d": "a1,old",
		"reason=missing_scope":                "a2",
		"reason=no_gateway_report":            "",
	} {
		l, err := list(alice, "team-a", selector)
		if err != nil {
			t.Errorf("--field-selector %s: %v", selector, err)
			continue
		}
		if got := names(l); got != want {
			t.Errorf("--field-selector %s lists %q, want %q", selector, got, want)
		}
	}
	// Paging: a limit of one, followed by continue tokens.
	var paged []string
	cont := ""
	for range 5 {
		raw, err := get(ctx, alice, "/apis/insights.privateapps.dev/v1alpha1/namespaces/team-a/calls", "", "limit=1&continue="+cont)
		must(t, err)
		l := &insightsv1alpha1.CallList{}
		must(t, json.Unmarshal(raw, l))
		paged = append(paged, names(l))
		if cont = l.Continue; cont == "" {
			break
		}
	}
	if got := strings.Join(paged, ","); got != "a3,a2,a1" {
		t.Errorf("paging one at a time gives %q, want a3,a2,a1", got)
	}
	// A bad selector says what is wrong.
	if _, err := list(alice, "team-a", "status=500"); err == nil || !strings.Contains(err.Error(), "use app, code, method, reason, since, until, url") {
		t.Errorf("an unknown field selector gives %v", err)
	}
	if _, err := list(alice, "team-a", "reason=Missing Scope"); err == nil || !strings.Contains(err.Error(), "is not a reason") {
		t.Errorf("a bad reason gives %v", err)
	}
	// Not another namespace's, nor every namespace's.
	for _, ns := range []string{"team-b", ""} {
		if _, err := list(alice, ns, ""); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("alice, bound in team-a only, lists calls of %q: %v", ns, err)
		}
	}
	// Victor, bound to the view role, reads apps but not the log.
	if _, err := list(victor, "team-a", ""); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("a viewer lists the call log: %v", err)
	}
	// The admin reads every namespace.
	all, err := list(cfg, "", "")
	must(t, err)
	if got := names(all); got != "b1,a3,a2,a1" && got != "a3,b1,a2,a1" {
		t.Errorf("all namespaces: %q", got)
	}

	t.Run("record insights", func(t *testing.T) { recordInsights(ctx, t, v, store) })
	t.Run("API usage", func(t *testing.T) { apiUsage(ctx, t, v) })
	t.Run("needs attention", func(t *testing.T) { needsAttention(ctx, t, v) })

	// kubectl itself, as alice, prints a table.
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", writeKubeconfig(t, mustUser(t, env, "alice"), dir, "alice"),
			"get", "calls", "-n", "team-a", "--field-selector", "app=billing-sync").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl get calls: %v\n%s", err, out)
		}
		text := string(out)
		for _, want := range []string{"TIME", "APP", "METHOD", "CODE", "URL", "DECIDED BY", "LATENCY", "/crm/v3/objects/deals/7?archived=false", "token-service: missing_scope", "12ms"} {
			if !strings.Contains(text, want) {
				t.Errorf("kubectl get calls lacks %q:\n%s", want, text)
			}
		}
		if strings.Contains(text, "crm-reporting") {
			t.Errorf("app=billing-sync printed another app's call:\n%s", text)
		}
	} else {
		t.Log("kubectl is not on the PATH; the table is not checked through it")
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("the server stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("the server did not stop")
	}
}

func get(ctx context.Context, cfg *rest.Config, path, fieldSelector, rawQuery string) ([]byte, error) {
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	u := strings.TrimRight(cfg.Host, "/") + path + "?" + rawQuery
	if fieldSelector != "" {
		u += "&fieldSelector=" + url.QueryEscape(fieldSelector)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", resp.Status, body)
	}
	return body, nil
}

func mustUser(t *testing.T, env *envtest.Environment, name string) *envtest.AuthenticatedUser {
	t.Helper()
	u, err := env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func userConfig(t *testing.T, env *envtest.Environment, name string) *rest.Config {
	return mustUser(t, env, name).Config()
}

func writeKubeconfig(t *testing.T, u *envtest.AuthenticatedUser, dir, name string) string {
	t.Helper()
	data, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func freeAddress(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
