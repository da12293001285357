package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/insights/insightstest"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// auditPolicy sends the audit webhook one event per finished request of
// an app's token, and nothing else (docs/calllog.md#kubernetes-api).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: [privateapps]
  - level: None
`

// callLogStack is the call log's whole path on one machine: envtest's
// kube-apiserver with the aggregation layer, the token webhook and the
// audit webhook; the built token service, the insights component (the
// insights server, SQLite and both ingest listeners) and the manager; a
// real nginx in front of an upstream, logging over syslog.
type callLogStack struct {
	t                    *testing.T
	tmp, adminKubeconfig string
	// secret is the gateways' (nginx's syslog lines); auditSecret the
	// audit webhook's, tokenServiceSecret the token service's when split.
	secret, auditSecret, tokenServiceSecret string
	tokenService, nginx                     string
	ingest, insightsMetrics                 string
	caPEM                                   []byte
	env                                     *envtest.Environment
	c                                       client.Client
	// mgr is the token service, controllers the manager, and insights the
	// insights component (the store, the insights API and the ingest
	// listeners) that mgr sends its decisions to: three processes, as in
	// the chart.
	mgr, controllers, insights *componentProcess
}

// startCallLogStack starts it all; nginx asks the
// token service at checkURL (a path and query of the token service) and
// passes allowed calls to upstream.
func startCallLogStack(t *testing.T, ctx context.Context, checkURL string, upstream http.Handler) *callLogStack {
	return startCallLogStackShaped(t, ctx, checkURL, upstream, false)
}

// startCallLogStackShaped starts it all; split gives the insights
// component a gateway report wait of 3 s and its metrics on
// s.insightsMetrics.
func startCallLogStackShaped(t *testing.T, ctx context.Context, checkURL string, upstream http.Handler, split bool) *callLogStack {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("this test runs a real nginx: install Debian's nginx-light (.ci/run does)")
	}
	root := repoRoot(t)
	s := &callLogStack{t: t, tmp: t.TempDir(), secret: "the-gateways-secret-of-this-test",
		auditSecret: "the-audit-webhooks-secret-of-this-test", tokenServiceSecret: "the-token-services-secret-of-this-test"}
	bins := commands(t)
	tokenService, insightsAddr, ingestAddr := freeAddress(t), freeAddress(t), freeAddress(t)
	s.tokenService = tokenService
	syslogAddr := freeUDPAddress(t)
	secretFile := s.writeFile("gateway-secret", s.secret+"\n")
	auditSecretFile := s.writeFile("audit-secret", s.auditSecret+"\n")
	tokenServiceSecretFile := s.writeFile("token-service-secret", s.tokenServiceSecret+"\n")
	const namespace, service = "privateapp-system", "privateapp-insights"
	certFile, keyFile, caPEM, err := insightstest.ServingCert(s.tmp, service+"."+namespace+".svc")
	must(t, err)

	tokenWebhook := s.writeFile("token-webhook.kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: ts, cluster: {server: "http://%s/apis/authentication.k8s.io/v1/tokenreviews"}}]
users: [{name: kube-apiserver}]
contexts: [{name: webhook, context: {cluster: ts, user: kube-apiserver}}]
current-context: webhook
`, tokenService))
	_, ingestPort, _ := net.SplitHostPort(ingestAddr)
	auditWebhook := s.writeFile("audit-webhook.kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: call-log, cluster: {server: "https://localhost:%s/ingest/v1/audit", certificate-authority-data: %s}}]
users: [{name: kube-apiserver, user: {token: %s}}]
contexts: [{name: audit, context: {cluster: call-log, user: kube-apiserver}}]
current-context: audit
`, ingestPort, base64.StdEncoding.EncodeToString(caPEM), s.auditSecret))
	policy := s.writeFile("audit-policy.yaml", auditPolicy)

	var c client.WithWatch
	s.env, c, s.adminKubeconfig = startControlPlane(t, root, s.tmp, func(env *envtest.Environment) {
		must(t, insightstest.EnableAggregation(env, s.tmp))
		env.ControlPlane.GetAPIServer().Configure().
			Set("authentication-token-webhook-config-file", tokenWebhook).
			Set("authentication-token-webhook-version", "v1").
			Set("audit-policy-file", policy).
			Set("audit-webhook-config-file", auditWebhook).
			Set("audit-webhook-batch-max-wait", "1s")
	})
	s.c = c
	s.ingest, s.caPEM = ingestAddr, caPEM
	_, insightsPort, _ := net.SplitHostPort(insightsAddr)
	insightsArgs := []string{"--bind-address=127.0.0.1", "--secure-port=" + insightsPort, "--tls-cert-file=" + certFile, "--tls-private-key-file=" + keyFile,
		"--call-log-sqlite=" + filepath.Join(s.tmp, "calls.db"), "--call-log-ingest-bind-address=" + ingestAddr,
		"--call-log-gateway-token-file=" + secretFile, "--call-log-audit-token-file=" + auditSecretFile,
		"--call-log-token-service-token-file=" + tokenServiceSecretFile, "--call-log-syslog-bind-address=" + syslogAddr}
	caFile := s.writeFile("ca.crt", string(caPEM))
	s.mgr = &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: s.adminKubeconfig, log: filepath.Join(s.tmp, "token-service.log"),
		args: []string{"--token-service-bind-address=" + tokenService, "--token-service-insecure", "--usage-flush-interval=2s",
			"--call-log-url=https://localhost:" + ingestPort, "--call-log-ca-file=" + caFile, "--call-log-token-file=" + tokenServiceSecretFile}}
	if split {
		s.insightsMetrics = freeAddress(t)
		insightsArgs = append(insightsArgs, "--metrics-bind-address="+s.insightsMetrics, "--metrics-secure=false", "--call-log-gateway-report-wait=3s")
	}
	s.insights = &componentProcess{t: t, bin: bins.Path(framework.Insights), kubeconfig: s.adminKubeconfig, log: filepath.Join(s.tmp, "insights.log"), args: insightsArgs}
	s.insights.start()
	t.Cleanup(s.insights.kill)
	s.controllers = startManager(t, s.adminKubeconfig, filepath.Join(s.tmp, "manager.log"))
	s.mgr.start()
	t.Cleanup(s.mgr.kill)
	// nginx logs its first request (the probe below) at once: were the
	// syslog listener not bound yet, the kernel's "port unreachable" would
	// fail the next line nginx sends, the first call a test counts.
	s.insights.waitLogged(ctx, syslogListening)

	must(t, insightstest.Register(ctx, c, namespace, service, insightsPort, caPEM))

	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	s.nginx = freeAddress(t)
	conf := s.writeFile("nginx.conf", fmt.Sprintf(framework.NginxCallLog, s.tmp, s.nginx, tokenService+checkURL,
		strings.TrimPrefix(up.URL, "http://"), s.secret, syslogAddr))
	cmd := exec.Command(nginx, "-p", s.tmp, "-c", conf)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitUntil(t, ctx, "nginx answers", func() bool { return s.call(http.MethodGet, "", "/", nil) != 0 })
	return s
}

// syslogListening is what the manager logs once its syslog listener is
// bound and read.
const syslogListening = "listening for gateway access logs over syslog"

func (s *callLogStack) writeFile(name, content string) string {
	p := filepath.Join(s.tmp, name)
	must(s.t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// call sends a request with tok through nginx and returns the status the
// client got (0 when nginx did not answer).
func (s *callLogStack) call(method, tok, path string, body io.Reader) int {
	req, _ := http.NewRequest(method, "http://"+s.nginx+path, body)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// appKubeconfig is a kubeconfig that authenticates with an app's token.
func (s *callLogStack) appKubeconfig(name, tok string) string {
	return s.writeFile(name+".kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: envtest, cluster: {server: %s, certificate-authority-data: %s}}]
users: [{name: app, user: {token: %s}}]
contexts: [{name: app, context: {cluster: envtest, user: app}}]
current-context: app
`, s.env.Config.Host, base64.StdEncoding.EncodeToString(s.env.Config.CAData), tok))
}

// kubectl runs kubectl as the admin.
func (s *callLogStack) kubectl(args ...string) string {
	s.t.Helper()
	out, err := framework.Kubectl(s.adminKubeconfig, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// TestCallLog: calls made through a real nginx, the token service and the
// kube-apiserver (an app's token used with kubectl) appear in `kubectl get
// calls` once each, with the code the client got and who decided it.
func TestCallLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startCallLogStack(t, ctx, "/v1/check?scope=crm.objects.contacts.read&gateway=edge", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		if r.URL.Path == "/fail" {
			http.Error(w, "upstream trouble", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	c, adminKubeconfig, secret := s.c, s.adminKubeconfig, s.secret
	_, reader := createReadyApp(t, ctx, c, "default", "reader", "crm.objects.contacts.read")
	_, other := createReadyApp(t, ctx, c, "default", "other", "crm.objects.deals.read")
	_, deployer := createReadyApp(t, ctx, c, "default", "deployer", "k8s.deployments.write")
	tokens := []string{reader, other, deployer, secret}
	get := func(tok, path string) int { return s.call(http.MethodGet, tok, path, nil) }
	waitUntil(t, ctx, "the reader's token works through nginx", func() bool { return get(reader, "/crm/v3/objects/contacts/1") == 200 })
	// That first call counts too; these three are the ones checked.
	for _, c := range []struct {
		tok, path string
		want      int
	}{
		{reader, "/crm/v3/objects/contacts/2?hapikey=abc123&properties=email", 200},
		{reader, "/fail", 500},
		{other, "/crm/v3/objects/contacts/3", 403},
	} {
		if got := get(c.tok, c.path); got != c.want {
			t.Fatalf("GET %s through nginx: %d, want %d", c.path, got, c.want)
		}
	}

	// The deployer uses its token against the Kubernetes API: authenticated,
	// then refused by RBAC.
	appKubeconfig := s.appKubeconfig("deployer", deployer)
	out, _ := exec.Command("kubectl", "--kubeconfig", appKubeconfig, "get", "configmaps", "-n", "default").CombinedOutput()
	if !strings.Contains(string(out), "Forbidden") && !strings.Contains(string(out), "forbidden") {
		t.Fatalf("kubectl with the app's token: %s, want Forbidden", out)
	}

	kubectl := s.kubectl
	type row struct {
		app, method, path, query, decidedBy, reason string
		code                                        int32
	}
	want := []row{
		{"reader", "GET", "/crm/v3/objects/contacts/2", "hapikey=REDACTED&properties=email", "upstream", "", 200},
		{"reader", "GET", "/fail", "", "upstream", "", 500},
		{"other", "GET", "/crm/v3/objects/contacts/3", "", "token-service", "missing_scope", 403},
		{"deployer", "TOKENREVIEW", "/apis/authentication.k8s.io/v1/tokenreviews", "", "token-service", "allowed", 200},
		{"deployer", "GET", "/api/v1/namespaces/default/configmaps", "limit=500", "kube-apiserver", "", 403},
	}
	var list insightsv1alpha1.CallList
	missing := want
	deadline := time.Now().Add(30 * time.Second)
	for len(missing) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the call log lacks %+v; it holds:\n%s", missing, kubectl("get", "calls", "-n", "default", "-o", "wide"))
		}
		time.Sleep(500 * time.Millisecond)
		list = insightsv1alpha1.CallList{}
		raw, err := exec.Command("kubectl", "--kubeconfig", adminKubeconfig, "get", "calls", "-n", "default", "-o", "json").Output()
		if err != nil || json.Unmarshal(raw, &list) != nil {
			continue
		}
		missing = nil
		for _, w := range want {
			n := 0
			for _, c := range list.Items {
				if (row{c.App, c.Method, c.Path, c.Query, c.DecidedBy, c.Reason, c.Code}) == w {
					n++
				}
			}
			if n != 1 {
				missing = append(missing, w)
			}
		}
	}
	for _, c := range list.Items {
		if c.App == "reader" && c.Code == 200 && (c.Latency == nil || c.Latency.Duration < 20*time.Millisecond) {
			t.Errorf("an upstream answer without nginx's latency: %+v", c)
		}
		if c.App == "reader" && c.Route != "" {
			t.Errorf("a route with no APICatalog: %+v", c)
		}
		if c.App == "reader" && c.Gateway != "edge" {
			t.Errorf("a call through the gateway that reports as edge does not name it: %+v", c)
		}
	}
	// Once each: no entry of a checked call stayed behind as "allowed".
	for _, c := range list.Items {
		if c.Reason == "allowed" && c.Method != "TOKENREVIEW" {
			t.Errorf("a call the gateway reported is still only the token service's allowed check: %+v", c)
		}
	}
	failed := kubectl("get", "calls", "-n", "default", "--field-selector", "code=5xx")
	if !strings.Contains(failed, "/fail") || strings.Contains(failed, "/crm/") {
		t.Errorf("--field-selector code=5xx:\n%s", failed)
	}

	// Each sender kind's secret opens its own endpoint only: the gateways'
	// (in clear in every syslog datagram) cannot post audit events or
	// token-service decisions, and a token-service batch cannot claim the
	// kube-apiserver's answer.
	forgedAudit := fmt.Sprintf(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"forged-audit","stage":"ResponseComplete",`+
		`"verb":"delete","requestURI":"/api/v1/namespaces/default/pods/forged","user":{"username":"privateapp:default:reader"},`+
		`"responseStatus":{"code":200},"requestReceivedTimestamp":%q}]}`, time.Now().UTC().Format(time.RFC3339Nano))
	forgedCall := fmt.Sprintf(`[{"id":"forged-call","time":%q,"namespace":"default","app":"reader","method":"DELETE","path":"/forged",`+
		`"code":200,"decidedBy":"kube-apiserver","source":"kubernetes","final":true}]`, time.Now().UTC().Format(time.RFC3339))
	for _, p := range []struct {
		path, secret, body string
		want               int
	}{
		{"/ingest/v1/audit", s.secret, forgedAudit, http.StatusUnauthorized},
		{"/ingest/v1/audit", s.tokenServiceSecret, forgedAudit, http.StatusUnauthorized},
		{"/ingest/v1/calls", s.secret, forgedCall, http.StatusUnauthorized},
		{"/ingest/v1/calls", s.auditSecret, forgedCall, http.StatusUnauthorized},
		{"/ingest/v1/access-log", s.auditSecret, `{"time":"1","id":"forged-line","namespace":"default","app":"reader","method":"GET","uri":"/forged","status":"200"}`, http.StatusUnauthorized},
	} {
		if code, _ := s.postIngest(p.path, p.secret, p.body); code != p.want {
			t.Errorf("POST %s with another sender kind's secret: %d, want %d", p.path, code, p.want)
		}
	}
	if code, res := s.postIngest("/ingest/v1/calls", s.tokenServiceSecret, forgedCall); code != http.StatusOK || !strings.Contains(res, `"wrong_sender":1`) {
		t.Errorf("a token-service batch claiming the kube-apiserver's answer: %d %s, want it dropped as wrong_sender", code, res)
	}
	if forged := kubectl("get", "calls", "-n", "default", "-o", "wide"); strings.Contains(forged, "forged") {
		t.Errorf("a forged entry reached the call log:\n%s", forged)
	}

	logText, _ := s.logs()
	all := string(logText) + kubectl("get", "calls", "-A", "-o", "yaml")
	for _, tok := range append(tokens, s.auditSecret, s.tokenServiceSecret) {
		if strings.Contains(all, tok) {
			t.Fatal("a token or a sender's secret is in the manager's log or the call log")
		}
	}
}

// postIngest posts body to the insights component's ingest endpoint path
// with secret as the Bearer token, and returns the status and the answer.
func (s *callLogStack) postIngest(path, secret, body string) (int, string) {
	s.t.Helper()
	_, ingestPort, _ := net.SplitHostPort(s.ingest)
	req, _ := http.NewRequest(http.MethodPost, "https://localhost:"+ingestPort+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.caPEM)
	ingestClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := ingestClient.Do(req)
	must(s.t, err)
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// TestCallLogWithoutGatewayReports: while the insights component is down,
// nginx's access-log lines are lost. The calls it allowed then show
// no_gateway_report once the wait is over (not the token service's 200 as
// if it were final), they are counted per gateway, a late report still
// completes one, and the calls made after the restart are complete again
// but for the first, whose line Linux fails with the error nginx's socket
// kept from the outage.
func TestCallLogWithoutGatewayReports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startCallLogStackShaped(t, ctx, "/v1/check?gateway=edge", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}), true)
	_, tok := createReadyApp(t, ctx, s.c, "default", "reader", "crm.objects.contacts.read")
	get := func(path string) {
		t.Helper()
		if code := s.call(http.MethodGet, tok, path, nil); code != http.StatusOK {
			t.Fatalf("GET %s through nginx: %d, want 200", path, code)
		}
	}
	waitUntil(t, ctx, "the reader's token works through nginx", func() bool { return s.call(http.MethodGet, tok, "/warm-up", nil) == 200 })
	get("/before")
	byPath := func() map[string]insightsv1alpha1.Call {
		raw, err := exec.Command("kubectl", "--kubeconfig", s.adminKubeconfig, "get", "calls", "-n", "default", "-o", "json").Output()
		var list insightsv1alpha1.CallList
		if err != nil || json.Unmarshal(raw, &list) != nil {
			return nil
		}
		out := map[string]insightsv1alpha1.Call{}
		for _, c := range list.Items {
			out[c.Path] = c
		}
		return out
	}
	// Complete: the gateway's report arrived. Its latency is not asked
	// for: nginx's $request_time counts milliseconds, and a call under one
	// reports 0.000, which the log shows as no latency.
	complete := func(c insightsv1alpha1.Call) bool {
		return c.DecidedBy == insightsv1alpha1.DecidedByUpstream && c.Code == 200 && c.Gateway == "edge"
	}
	unreported := func(c insightsv1alpha1.Call) bool {
		return c.DecidedBy == insightsv1alpha1.DecidedByTokenService && c.Reason == "no_gateway_report" && c.Code == 200 && c.Gateway == "edge"
	}
	waitUntil(t, ctx, "the call before the outage is complete", func() bool { return complete(byPath()["/before"]) })

	s.insights.kill()
	down := []string{"/down/1", "/down/2", "/down/3"}
	for _, p := range down {
		get(p)
	}
	s.insights.start()
	s.insights.waitLogged(ctx, syslogListening)
	after := []string{"/after/1", "/after/2", "/after/3"}
	for _, p := range after {
		get(p)
	}

	var calls map[string]insightsv1alpha1.Call
	waitUntil(t, ctx, "the calls made during the outage show no_gateway_report, and the later ones are complete", func() bool {
		calls = byPath()
		for _, p := range down {
			if !unreported(calls[p]) {
				return false
			}
		}
		for _, p := range after[1:] {
			if !complete(calls[p]) {
				return false
			}
		}
		// The first line after the restart may be lost too.
		return complete(calls[after[0]]) || unreported(calls[after[0]])
	})
	if c := calls["/before"]; !complete(c) {
		t.Errorf("the call before the outage changed: %+v", c)
	}
	listed := s.kubectl("get", "calls", "-n", "default", "--field-selector", "reason=no_gateway_report", "-o", "wide")
	for _, p := range down {
		if !strings.Contains(listed, p) {
			t.Errorf("--field-selector reason=no_gateway_report does not list %s:\n%s", p, listed)
		}
	}
	if strings.Contains(listed, "/before") || strings.Contains(listed, "/after/2") || !strings.Contains(listed, "token-service: no_gateway_report") ||
		!strings.Contains(listed, " edge ") {
		t.Errorf("kubectl get calls --field-selector reason=no_gateway_report -o wide:\n%s", listed)
	}

	// The missing reports are counted for the gateway.
	missing := func() float64 {
		resp, err := http.Get("http://" + s.insightsMetrics + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, `privateapps_calllog_gateway_reports_missing_total{gateway="edge"} `); ok {
				var f float64
				_, _ = fmt.Sscan(v, &f)
				return f
			}
		}
		return 0
	}
	if n := missing(); n < float64(len(down)) || n > float64(len(down)+1) {
		t.Errorf("privateapps_calllog_gateway_reports_missing_total{gateway=\"edge\"} is %v, want %d (or one more)", n, len(down))
	}

	// A report that comes late still completes its call.
	late := calls[down[0]]
	line := fmt.Sprintf(`{"time":"%d.000","id":%q,"namespace":"default","app":"reader","method":"GET","uri":%q,"status":"504","duration":"0.250"}`,
		time.Now().Unix(), late.Name, late.Path)
	if code, _ := s.postIngest("/ingest/v1/access-log", s.secret, line+"\n"); code != http.StatusOK {
		t.Fatalf("posting the late report: %d", code)
	}
	waitUntil(t, ctx, "the late report completes the call", func() bool {
		c := byPath()[late.Path]
		return c.Name == late.Name && c.DecidedBy == insightsv1alpha1.DecidedByUpstream && c.Code == 504 && c.Reason == ""
	})

	logText, _ := s.logs()
	if all := string(logText) + listed; strings.Contains(all, tok) || strings.Contains(all, s.secret) {
		t.Fatal("a token or the shared secret is in a log or the call log")
	}
}

func freeUDPAddress(t *testing.T) string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// TestCallLogOutlivesTheStore runs the chart's shape: the token service in
// one process, the insights component (store, ingest, API) in another.
// Killing the insights process does not slow or fail a check, and the
// decisions made while it is down reach the log once it is back.
func TestCallLogOutlivesTheStore(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	tokenService := freeAddress(t)
	_, c, adminKubeconfig := startControlPlane(t, root, tmp, func(env *envtest.Environment) {
		must(t, insightstest.EnableAggregation(env, tmp))
	})
	insights := startInsights(t, adminKubeconfig, tmp)
	operator := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: adminKubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: append([]string{"--token-service-bind-address=" + tokenService, "--token-service-insecure"}, insights.tokenServiceArgs...)}
	operator.start()
	defer operator.kill()
	startManager(t, adminKubeconfig, filepath.Join(tmp, "manager.log"))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, insightsPort, _ := net.SplitHostPort(insights.secure)
	must(t, insightstest.Register(ctx, c, "privateapp-system", "privateapp-insights", insightsPort, insights.caPEM))
	_, tok := createReadyApp(t, ctx, c, "default", "steady", "crm.objects.contacts.read")
	checks := func(n int) {
		t.Helper()
		for i := range n {
			if code := checkStatus(tokenService, tok); code != http.StatusOK {
				t.Fatalf("check %d of %d: %d, want 200", i+1, n, code)
			}
		}
	}
	logged := func() int {
		raw, err := exec.Command("kubectl", "--kubeconfig", adminKubeconfig, "get", "calls", "-n", "default",
			"--field-selector", "app=steady", "-o", "json").Output()
		if err != nil {
			return -1
		}
		var l insightsv1alpha1.CallList
		if json.Unmarshal(raw, &l) != nil {
			return -1
		}
		return len(l.Items)
	}
	waitUntil(t, ctx, "the token service answers the app's token", func() bool { return checkStatus(tokenService, tok) == http.StatusOK })
	checks(19)
	waitUntil(t, ctx, "20 calls in the log", func() bool { return logged() == 20 })

	insights.kill()
	checks(60)
	// The store stays down for a few of the queue's once-a-second flushes.
	time.Sleep(3 * time.Second)
	insights.start()
	waitUntil(t, ctx, "the 60 calls made while the store was down reach the log", func() bool { return logged() == 80 })
	time.Sleep(2 * time.Second)
	if n := logged(); n != 80 {
		t.Errorf("%d calls in the log, want 80: one call, one entry", n)
	}
}

// logs are the three processes' logs, one after the other.
func (s *callLogStack) logs() ([]byte, error) {
	var all []byte
	for _, p := range []*componentProcess{s.mgr, s.controllers, s.insights} {
		b, err := os.ReadFile(p.log)
		if err != nil {
			return nil, err
		}
		all = append(all, b...)
	}
	return all, nil
}
