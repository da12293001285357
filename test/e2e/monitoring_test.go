package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// promtool returns Debian's promtool (hack/test-deps.sh installs it).
func promBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is missing: install Debian's prometheus package (hack/test-deps.sh, which make test runs, does)", name)
	}
	return p
}

// TestAlertRules: the rules file passes promtool's checks and its unit
// tests (every alert, firing and silent), and the chart's PrometheusRule
// is the same rules with the thresholds its values set.
func TestAlertRules(t *testing.T) {
	root := repoRoot(t)
	promtool := promBinary(t, "promtool")
	rules := filepath.Join(root, "charts", "privateapp-operator", "files", "privateapps-rules.yaml")
	for _, args := range [][]string{{"check", "rules", rules}, {"test", "rules", filepath.Join(root, "test", "monitoring", "privateapps-rules.test.yaml")}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	tmp := t.TempDir()
	h := chartRun{t: t, helm: tool(t, root, "helm"), chart: filepath.Join(root, "charts", "privateapp-operator"), tmp: tmp}
	objs := objects(t, h.template("monitoring.prometheusRule.enabled=true", "monitoring.prometheusRule.disconnectedAfterSeconds=7200",
		"monitoring.grafanaDashboard.enabled=true"))
	rule := objs["PrometheusRule/pa-privateapp-operator"]
	if rule == nil {
		t.Fatalf("no PrometheusRule rendered: %v", kinds(objs))
	}
	spec, _ := yaml.Marshal(rule.Object["spec"])
	rendered := filepath.Join(tmp, "rendered-rules.yaml")
	must(t, os.WriteFile(rendered, spec, 0o600))
	file, err := os.ReadFile(rules)
	must(t, err)
	out, err := exec.Command(promtool, "check", "rules", rendered).CombinedOutput()
	if n := strings.Count(string(file), "- alert: "); err != nil || !strings.Contains(string(out), fmt.Sprintf("SUCCESS: %d rules found", n)) {
		t.Fatalf("promtool check rules on the chart's PrometheusRule: %v\n%s", err, out)
	}
	if !strings.Contains(string(spec), "> 7200 # disconnectedAfterSeconds") || !strings.Contains(string(spec), "> 3600 # expiredAfterSeconds") {
		t.Errorf("the PrometheusRule does not carry monitoring.prometheusRule.disconnectedAfterSeconds=7200:\n%s", spec)
	}
	cm := objs["ConfigMap/pa-privateapp-operator-dashboard"]
	if cm == nil || cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Fatalf("no dashboard ConfigMap labelled for Grafana's sidecar: %v", kinds(objs))
	}
	file, err = os.ReadFile(filepath.Join(root, "charts", "privateapp-operator", "files", "privateapps-dashboard.json"))
	must(t, err)
	if got := cm.Object["data"].(map[string]any)["privateapps-dashboard.json"]; strings.TrimSpace(got.(string)) != strings.TrimSpace(string(file)) {
		t.Error("the dashboard ConfigMap does not hold files/privateapps-dashboard.json as it is")
	}
}

// dashboardQueries are the PromQL of every panel of the dashboard, with
// Grafana's variables replaced as Grafana would for "All" over a day.
func dashboardQueries(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	must(t, json.Unmarshal(data, &d))
	out := map[string]string{}
	r := strings.NewReplacer("$namespace", ".*", "$__rate_interval", "1m", "$__range", "1h")
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			out[fmt.Sprintf("%s #%d", p.Title, i+1)] = r.Replace(tg.Expr)
		}
	}
	return out
}

// TestDashboardQueriesReturnData runs the three built components (manager,
// token service, insights) against a real API server, with apps in every
// state the panels draw, and a real Prometheus (Debian's) scraping their
// metrics endpoints; every query of the dashboard returns data.
func TestDashboardQueriesReturnData(t *testing.T) {
	root := repoRoot(t)
	prometheus := promBinary(t, "prometheus")
	tmp := t.TempDir()
	bins := commands(t)
	env, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tokenService, metricsAddr, promAddr := freeAddress(t), freeAddress(t), freeAddress(t)
	// Prometheus scrapes as the chart's ServiceMonitor does: HTTPS, with a
	// ServiceAccount token that the metrics-reader ClusterRole lets in.
	scraperToken := metricsScraper(t, ctx, env, c, root, "prometheus", true)
	tokenFile := filepath.Join(tmp, "prometheus-token")
	must(t, os.WriteFile(tokenFile, []byte(scraperToken), 0o600))
	// The three components as the chart runs them, each with its metrics
	// endpoint, which Prometheus scrapes as the ServiceMonitors do.
	serviceMetrics, insightsMetrics := freeAddress(t), freeAddress(t)
	insights := startInsights(t, kubeconfig, tmp, "--metrics-bind-address="+insightsMetrics)
	ts := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: append([]string{"--token-service-bind-address=" + tokenService, "--token-service-insecure", "--metrics-bind-address=" + serviceMetrics,
			"--usage-flush-interval=1s"}, insights.tokenServiceArgs...)}
	ts.start()
	defer ts.kill()
	startManager(t, kubeconfig, filepath.Join(tmp, "manager.log"), "--metrics-bind-address="+metricsAddr)

	_, tok := createReadyApp(t, ctx, c, "default", "reader", "crm.objects.contacts.read")
	lifetime := &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "reporting"},
		Spec: v1alpha1.PrivateAppSpec{DisplayName: "Reporting", Scopes: []string{"crm.objects.contacts.read"}, TokenLifetime: &metav1.Duration{Duration: 2160 * time.Hour}}}
	must(t, c.Create(ctx, lifetime))
	createReadyApp(t, ctx, c, "default", "rotating", "crm.objects.contacts.read")
	must(t, c.Create(ctx, &v1alpha1.TokenRotation{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "rotating-later"},
		Spec: v1alpha1.TokenRotationSpec{AppName: "rotating", Strategy: v1alpha1.RotationDelayed}}))

	conf := filepath.Join(tmp, "prometheus.yml")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: privateapp-operator
    scheme: https
    tls_config: {insecure_skip_verify: true}
    authorization: {credentials_file: %q}
    static_configs: [{targets: [%q, %q, %q]}]
`, tokenFile, metricsAddr, serviceMetrics, insightsMetrics)), 0o600))
	prom := exec.Command(prometheus, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(tmp, "tsdb"), "--web.listen-address="+promAddr)
	promLog, err := os.Create(filepath.Join(tmp, "prometheus.log"))
	must(t, err)
	prom.Stdout, prom.Stderr = promLog, promLog
	must(t, prom.Start())
	defer func() { _ = prom.Process.Kill(); _ = prom.Wait() }()

	// Calls keep coming while Prometheus scrapes: allowed, and refused for
	// an unknown token, so rates and latencies have data.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		unknown := "pat_" + strings.Repeat("A", 60)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				checkStatus(tokenService, tok)
				checkStatus(tokenService, unknown)
			}
		}
	}()

	query := func(q string) (int, error) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
			return 0, fmt.Errorf("%s: %s %s", resp.Status, r.Error, body)
		}
		return len(r.Data.Result), nil
	}
	queries := dashboardQueries(t, filepath.Join(root, "charts", "privateapp-operator", "files", "privateapps-dashboard.json"))
	if len(queries) < 14 {
		t.Fatalf("%d dashboard queries, want one per panel at least", len(queries))
	}
	var empty []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		empty = nil
		for name, q := range queries {
			// Errors until Prometheus listens; then a query that does not
			// parse would stay an error to the end.
			n, err := query(q)
			if err != nil {
				empty = append(empty, fmt.Sprintf("%s: %s: %v", name, q, err))
			} else if n == 0 {
				empty = append(empty, name+": "+q)
			}
		}
		if len(empty) == 0 {
			break
		}
		if time.Now().After(deadline) {
			logText, _ := os.ReadFile(promLog.Name())
			t.Fatalf("after 90 s these dashboard queries return no data:\n%s\nprometheus log:\n%s", strings.Join(empty, "\n"), tail(string(logText), 2000))
		}
		time.Sleep(2 * time.Second)
	}
	// The alerts' series are the panels': an app's token expiry and a grace
	// period are there with the values the status says.
	for q, want := range map[string]string{
		`privateapps_app_token_expiry_seconds{app="reporting"} > 89 * 86400`:                      "the 90-day token's seconds left",
		`privateapps_app_grace_period_end_timestamp_seconds{app="rotating"} - time() > 6 * 86400`: "the rotation's 7-day grace period",
		`privateapps_account_daily_limit{namespace="default"} == 250000`:                          "the free edition's daily limit",
	} {
		if n, err := query(q); err != nil || n != 1 {
			t.Errorf("%s (%s): %d series, %v", want, q, n, err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// metricsScraper makes the ServiceAccount default/name, binds it to the
// metrics-reader ClusterRole of config/rbac when allowed, and returns a
// token of it.
func metricsScraper(t *testing.T, ctx context.Context, env *envtest.Environment, c client.Client, root, name string, allowed bool) string {
	t.Helper()
	must(t, c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}))
	if allowed {
		data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "metrics_reader_role.yaml"))
		must(t, err)
		role := &rbacv1.ClusterRole{}
		must(t, yaml.Unmarshal(data, role))
		role.Name = "e2e-metrics-reader-" + name
		must(t, c.Create(ctx, role))
		must(t, c.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: name}},
		}))
	}
	token, _ := asServiceAccount(t, ctx, env, c, "default", name)
	return token
}

// TestMetricsNeedAuthorization: the built manager serves its metrics over
// HTTPS only to scrapers a real API server authenticates and authorizes
// (the metrics-reader ClusterRole); no token gets 401, a token without the
// role 403, and --metrics-secure=false is plain HTTP for development.
func TestMetricsNeedAuthorization(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	env, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	secure, plain := freeAddress(t), freeAddress(t)
	for i, args := range [][]string{
		{"--metrics-bind-address=" + secure},
		{"--metrics-bind-address=" + plain, "--metrics-secure=false"},
	} {
		mgr := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, fmt.Sprintf("token-service-%d.log", i)),
			args: append([]string{"--token-service-bind-address=" + freeAddress(t), "--token-service-insecure",
				"--health-probe-bind-address=" + freeAddress(t)}, args...)}
		mgr.start()
		defer mgr.kill()
	}
	scraper := metricsScraper(t, ctx, env, c, root, "scraper", true)
	stranger := metricsScraper(t, ctx, env, c, root, "stranger", false)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the endpoint's certificate is self-signed; what is tested is who gets in
	}}
	get := func(url, token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	// The endpoint answers once the manager runs.
	var code int
	var body string
	deadline := time.Now().Add(time.Minute)
	for {
		var err error
		code, body, err = get("https://"+secure+"/metrics", scraper)
		if err == nil || time.Now().After(deadline) {
			must(t, err)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != http.StatusOK || !strings.Contains(body, "privateapps_") {
		t.Errorf("a scraper with the metrics-reader role: %d, want 200 with the privateapps_ metrics", code)
	}
	for _, tc := range []struct {
		who, token string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a ServiceAccount without the role", stranger, http.StatusForbidden},
		{"a token the API server does not know", "not-a-token", http.StatusUnauthorized},
	} {
		code, body, err := get("https://"+secure+"/metrics", tc.token)
		must(t, err)
		if code != tc.want || strings.Contains(body, "privateapps_") {
			t.Errorf("%s: %d, want %d and no metrics", tc.who, code, tc.want)
		}
	}
	// Plain HTTP to the secure endpoint never gets the metrics.
	if _, body, _ := get("http://"+secure+"/metrics", scraper); strings.Contains(body, "privateapps_") {
		t.Error("plain HTTP to the secure endpoint got the metrics")
	}
	code, body, err := get("http://"+plain+"/metrics", "")
	must(t, err)
	if code != http.StatusOK || !strings.Contains(body, "privateapps_") {
		t.Errorf("--metrics-secure=false: %d, want the metrics over plain HTTP", code)
	}
}
