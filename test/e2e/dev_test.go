// Package e2e drives the built binaries the way a user does.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestDevEnvironment runs what `make dev` runs: it must bring up a control
// plane with the samples Ready and their tokens in Secrets, leak no token,
// and stop every process it started on Ctrl-C.
func TestDevEnvironment(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	dev := build(t, root, "./hack/dev", filepath.Join(tmp, "dev"))
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	logDir := filepath.Join(tmp, "dev-logs")

	tokenService := freeAddress(t)
	mailLog := filepath.Join(tmp, "mail.log")
	cmd := exec.Command(dev, "--bin", bins.Dir, "--kubeconfig", kubeconfig, "--log-dir", logDir, "--ingest-address", freeAddress(t),
		"--assets", assets(root), "--token-service-address", tokenService, "--mail-log", mailLog,
		"--insights-address", freeAddress(t), "--call-log", filepath.Join(tmp, "calls.db"),
		"--nginx-address", freeAddress(t), "--syslog-address", freeUDPAddress(t), "--webhook-address", freeAddress(t))
	cmd.Dir = root
	var output bytes.Buffer
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(io.TeeReader(stdout, &output))
		for sc.Scan() {
			if sc.Text() == "dev: ready" {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("dev exited before it was ready:\n%s", output.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("dev was not ready after 3 minutes:\n%s", output.String())
	}

	kubectl := func(args ...string) []byte {
		t.Helper()
		out, err := framework.Kubectl(kubeconfig, args...)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(out)
	}
	server := controlPlaneAddress(t, kubectl)

	// The notification samples told the directory's three users about each
	// sample app's install, by mail to the local catcher.
	for _, user := range []string{"alice", "bob", "carol"} {
		for _, app := range []string{"billing-sync", "crm-reporting", "warehouse-sync"} {
			want := fmt.Sprintf("mail to %s@example.com: [privateapps] App %s in namespace default was installed", user, app)
			if !strings.Contains(output.String(), want) {
				t.Errorf("dev output lacks %q", want)
			}
		}
	}
	if mails, err := os.ReadFile(mailLog); err != nil || bytes.Count(mails, []byte("X-PrivateApps-Event: AppInstalled")) != 9 {
		t.Errorf("mail log %s: %v, want the nine install mails", mailLog, err)
	}

	// What the README's walkthrough does.
	kubectl("wait", "--for=condition=Ready", "privateapp/billing-sync", "-n", "default", "--timeout=30s")
	table := string(kubectl("get", "privateapps", "-A"))
	for _, want := range []string{"NAMESPACE", "STATUS", "READY", "SCOPES", "INSTALLED BY", "AGE", "billing-sync", "Connected"} {
		if !strings.Contains(table, want) {
			t.Errorf("`kubectl get privateapps -A` lacks %q:\n%s", want, table)
		}
	}
	var app struct {
		Status struct {
			SecretName string `json:"secretName"`
			Token      struct {
				Digest string `json:"digest"`
			} `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(kubectl("get", "privateapp", "billing-sync", "-n", "default", "-o", "json"), &app); err != nil {
		t.Fatal(err)
	}
	encoded := kubectl("get", "secret", app.Status.SecretName, "-n", "default", "-o", "jsonpath={.data.token}")
	text, err := base64.StdEncoding.DecodeString(string(encoded))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := token.Parse(string(text))
	if err != nil {
		t.Fatalf("the Secret's token does not parse: %v", err)
	}
	if tok.Digest().String() != app.Status.Token.Digest {
		t.Fatalf("the Secret's token has digest %s, status says %s", tok.Digest(), app.Status.Token.Digest)
	}

	// The sample catalog is in force, and dev showed one call it allows and
	// one it refuses.
	catalogs := string(kubectl("get", "apicatalogs"))
	if !strings.Contains(catalogs, "crm") || !strings.Contains(catalogs, "True") {
		t.Errorf("`kubectl get apicatalogs` does not show the sample catalog in force:\n%s", catalogs)
	}
	for _, want := range []string{
		"X-PrivateApp-Route=crm/contacts-get",
		`/v1/check/crm/v3/objects/deals/1 as warehouse-sync (Envoy path-prefix mode): 403`,
		`lacks the scopes route crm/deals-get (/crm/v3/objects/deals/{dealId}) requires: crm.objects.deals.read`,
	} {
		if !strings.Contains(output.String(), want) {
			t.Errorf("dev output lacks %q", want)
		}
	}

	// Both calls are in the call log, read through the aggregated API with
	// the admin's own credentials, each with the code the client got.
	calls := string(kubectl("get", "calls", "-n", "default"))
	rows := map[string]bool{}
	for _, line := range strings.Split(calls, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 {
			rows[strings.Join([]string{f[1], f[2], f[3], f[4]}, " ")] = true
		}
	}
	for _, want := range []string{"billing-sync GET 200 /crm/v3/objects/contacts/1", "warehouse-sync GET 403 /crm/v3/objects/deals/1",
		// Through nginx, with the stand-in API's answers.
		"billing-sync GET 200 /crm/v3/objects/contacts/7", "billing-sync GET 404 /crm/v3/objects/contacts/404"} {
		if !rows[want] {
			t.Errorf("`kubectl get calls -n default` lacks the row %q:\n%s", want, calls)
		}
	}
	if refused := string(kubectl("get", "calls", "-n", "default", "--field-selector", "code=4xx")); strings.Contains(refused, " 200 ") ||
		!strings.Contains(refused, "token-service: missing_scope") || !hasLine(refused, "/crm/v3/objects/contacts/404", "upstream") {
		t.Errorf("`kubectl get calls --field-selector code=4xx` shows:\n%s", refused)
	}
	if !strings.Contains(output.String(), "kubectl get calls -n default") {
		t.Error("dev output does not show the call log")
	}
	// dev showed a record insight (the invoice billing-sync created) and a
	// needs-attention row (the grace period of the sample rotation).
	if !regexp.MustCompile(`billing-sync\s+invoices\s+1\s+0\s+0\s+0`).MatchString(output.String()) {
		t.Errorf("dev output lacks billing-sync's created invoice:\n%s", output.String())
	}
	if !hasLine(output.String(), "billing-sync", "GracePeriodEnding", "in", "expireOldTokenNow") {
		t.Errorf("dev output lacks billing-sync's grace period in needs attention:\n%s", output.String())
	}
	insights := string(kubectl("get", "recordinsights", "-n", "default", "--field-selector", "recordType=invoices,since=0d"))
	if !regexp.MustCompile(`\(all apps\)\s+invoices\s+1\s+0\s+0\s+0`).MatchString(insights) {
		t.Errorf("`kubectl get recordinsights` does not count the invoice:\n%s", insights)
	}

	describe := string(kubectl("describe", "privateapp", "billing-sync", "-n", "default"))
	for _, want := range []string{"Conditions:", "TokenIssued", "Activity:", "Installed"} {
		if !strings.Contains(describe, want) {
			t.Errorf("`kubectl describe privateapp` lacks %q", want)
		}
	}
	// The token service: the call counts in status within the flush interval
	// (5 s in dev), and deleting the app revokes the token within a second.
	check := func() int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+tokenService+"/v1/check", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Reveal())
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URL", "https://api.example.com/crm/v3/objects/contacts/1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := check(); code != http.StatusOK {
		t.Fatalf("/v1/check with the sample token: %d, want 200", code)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := kubectl("get", "privateapp", "billing-sync", "-n", "default", "-o", "jsonpath={.status.usage.callsToday} {.status.lastActivityTime}")
		if f := strings.Fields(string(out)); len(f) == 2 && f[0] != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status.usage.callsToday and lastActivityTime not written within 30 s: %q", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The two plugin commands dev prints work against its control plane.
	plugin := bins.Path(framework.Plugin)
	for _, args := range [][]string{{}, {"describe", "billing-sync"}} {
		if !strings.Contains(output.String(), strings.TrimSpace("bin/kubectl-privateapp "+strings.Join(args, " "))) {
			t.Errorf("dev output does not suggest `kubectl-privateapp %s`", strings.Join(args, " "))
		}
		out, err := exec.Command(plugin, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "billing-sync") || !strings.Contains(string(out), "GracePeriodEnding") {
			t.Errorf("kubectl-privateapp %s against make dev: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// ... and so does the web console it prints: its sign-in link opens
	// the connected-apps page of dev's apps.
	if !strings.Contains(output.String(), "bin/kubectl-privateapp ui") {
		t.Error("dev output does not suggest `kubectl-privateapp ui`")
	}
	uiCtx, uiCancel := context.WithTimeout(context.Background(), time.Minute)
	defer uiCancel()
	con := startConsole(t, uiCtx, plugin, "--kubeconfig", kubeconfig)
	jar, _ := cookiejar.New(nil)
	resp, err := (&http.Client{Jar: jar}).Get(con.link)
	if err != nil {
		t.Fatal(err)
	}
	home, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(home), "billing-sync") || !strings.Contains(string(home), "GracePeriodEnding") {
		t.Errorf("the console's sign-in link against make dev: %d\n%s", resp.StatusCode, home)
	}
	// kubectl get privateapps: who installed it (make dev runs the admission
	// webhooks that record it), the calls of today and the last activity.
	for _, line := range strings.Split(string(kubectl("get", "privateapps", "-n", "default")), "\n") {
		if strings.HasPrefix(line, "billing-sync ") && (strings.Contains(line, "<none>") || !strings.Contains(line, "dev-admin")) {
			t.Errorf("`kubectl get privateapps` shows billing-sync without calls today, last activity or installer:\n%s", line)
		}
	}
	if !strings.Contains(output.String(), `"installedBy":"dev-admin"`) || !regexp.MustCompile(`"userId":[1-9][0-9]*,`).MatchString(output.String()) {
		t.Error("access-token-info in the dev output does not name dev-admin as the user who installed the app, with HubSpot's numeric userId")
	}
	// The sample delayed rotation: its old token's expiry is a time to
	// come, shown as a time.
	rotations := string(kubectl("get", "tokenrotations", "-n", "default"))
	if strings.Contains(rotations, "<invalid>") || !regexp.MustCompile(`GracePeriod\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`).MatchString(rotations) {
		t.Errorf("`kubectl get tokenrotations` during the grace period:\n%s", rotations)
	}
	events := string(kubectl("get", "events", "-A", "-o", "json"))

	kubectl("delete", "privateapp", "billing-sync", "-n", "default", "--wait=false")
	deleted := time.Now()
	for check() != http.StatusUnauthorized {
		if time.Since(deleted) > 5*time.Second {
			t.Fatal("the deleted app's token still works 5 s later")
		}
		time.Sleep(10 * time.Millisecond)
	}
	revokedAfter := time.Since(deleted)
	t.Logf("token refused %s after kubectl delete returned", revokedAfter)
	if revokedAfter > time.Second {
		t.Errorf("revocation took %s, want under 1 s", revokedAfter)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("dev exited with %v after Ctrl-C:\n%s", err, output.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("dev did not stop within a minute of Ctrl-C:\n%s", output.String())
	}

	texts := map[string]string{"Events": events, "dev output": output.String()}
	for _, component := range []string{framework.Manager, framework.TokenService, framework.Insights} {
		logText, err := os.ReadFile(filepath.Join(logDir, component+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if len(logText) == 0 {
			t.Fatalf("the %s logged nothing; the leak check below would be empty", component)
		}
		texts[component+" log"] = string(logText)
	}
	for what, text := range texts {
		if strings.Contains(text, tok.Reveal()) {
			t.Errorf("the token appears in the %s", what)
		}
	}

	if conn, err := net.DialTimeout("tcp", server, time.Second); err == nil {
		conn.Close()
		t.Errorf("the kube-apiserver at %s still answers after dev stopped", server)
	}
	for _, component := range []string{framework.Manager, framework.TokenService, framework.Insights} {
		if out, _ := exec.Command("pgrep", "-f", bins.Path(component)+" ").Output(); len(out) > 0 {
			t.Errorf("the %s still runs after dev stopped: pids %s", component, out)
		}
	}
}

func freeAddress(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func controlPlaneAddress(t *testing.T, kubectl func(...string) []byte) string {
	u, err := url.Parse(strings.TrimSpace(string(kubectl("config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"))))
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func assets(root string) string {
	if a := os.Getenv("KUBEBUILDER_ASSETS"); a != "" {
		return a
	}
	return filepath.Join(root, "bin", "k8s")
}

func build(t *testing.T, root, pkg, out string) string {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// hasLine reports whether one line of text holds every part.
func hasLine(text string, parts ...string) bool {
	for line := range strings.Lines(text) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
