package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestKubectlPlugin runs the built kubectl-privateapp against a real API
// server, the built components (manager, token service, and insights with
// the call log and its API) and a real nginx: every subcommand, the output formats,
// completion, exit codes, and no token in any output but `token`'s.
func TestKubectlPlugin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := startCallLogStack(t, ctx, "/v1/check", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
	}))
	plugin := commands(t).Path(framework.Plugin)
	s.kubectl("apply", "-f", filepath.Join(repoRoot(t), "config", "samples", "privateapps_v1alpha1_apicatalog.yaml"))
	app, tok := createReadyApp(t, ctx, s.c, "default", "syncer", "crm.objects.contacts.read", "crm.objects.contacts.write")
	must(t, s.c.Create(ctx, &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "reporting"},
		Spec: v1alpha1.PrivateAppSpec{DisplayName: "Reporting", Scopes: []string{"crm.objects.contacts.read"}, TokenLifetime: &metav1.Duration{Duration: 240 * time.Hour}}}))
	tokens := []string{tok, s.secret}
	waitUntil(t, ctx, "the catalog is in force", func() bool { return s.call(http.MethodGet, tok, "/crm/v3/objects/contacts/1", nil) == 200 })
	if got := s.call(http.MethodPost, tok, "/crm/v3/objects/contacts", strings.NewReader("{}")); got != 201 {
		t.Fatalf("POST contacts through nginx: %d", got)
	}

	var outputs strings.Builder
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(plugin, append([]string{"--kubeconfig", s.adminKubeconfig}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if len(args) == 0 || args[0] != "token" {
			outputs.WriteString(stdout.String() + stderr.String())
		}
		return stdout.String() + stderr.String(), code
	}
	ok := func(args ...string) string {
		t.Helper()
		out, code := run(args...)
		if code != 0 {
			t.Fatalf("kubectl privateapp %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}
	contains := func(what, out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, out)
			}
		}
	}

	// home: what needs attention (the 10-day token), then every app.
	waitUntil(t, ctx, "reporting has its token", func() bool {
		r := &v1alpha1.PrivateApp{}
		return s.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "reporting"}, r) == nil && r.Status.Token != nil
	})
	home := ok()
	contains("home", home, "NEEDS ATTENTION (1)", "default/reporting  TokenExpiring", "NAME", "STATUS", "INSTALLED BY", "LAST ACTIVITY", "CALLS TODAY",
		"syncer", "reporting", "Connected")
	// The same view: asked back to back until no second or usage flush
	// falls between the two (LAST ACTIVITY is relative, CALLS TODAY moves).
	waitUntil(t, ctx, "`home` prints what the bare command prints", func() bool {
		bare := ok()
		return ok("home") == bare
	})
	contains("home -A", ok("-A"), "NAMESPACE", "default")
	var hv struct {
		Apps []struct{ Name string } `json:"apps"`
	}
	must(t, json.Unmarshal([]byte(ok("-o", "json")), &hv))
	if len(hv.Apps) != 2 {
		t.Errorf("home -o json lists %d apps, want 2", len(hv.Apps))
	}

	// describe: the overview, with the call log and record insights.
	waitUntil(t, ctx, "describe shows the created contact, the latest calls and the usage", func() bool {
		out, _ := run("describe", "syncer")
		return strings.Contains(out, "contacts      1") && strings.Contains(out, "POST") && !strings.Contains(out, "Usage today:   0 calls")
	})
	desc := ok("describe", "syncer")
	contains("describe", desc, "syncer (syncer)  namespace default", "Status:        Connected", "digest:    "+app.Status.Token.Digest[:19]+"…",
		"Scopes:        crm.objects.contacts.read, crm.objects.contacts.write", "Calls per day, last 30 days (UTC):", "█", "Activity:", "Installed",
		"Record insights, last 7 days:", "Latest calls:", "/crm/v3/objects/contacts", "upstream",
		fmt.Sprintf("HubSpot ids:   appId %d, hubId %d, userId ", app.Status.AppID, app.Status.HubID))

	// token: the Secret's token, alone.
	if got := ok("token", "syncer"); got != tok+"\n" {
		t.Errorf("token printed %d bytes, not the Secret's token and a newline", len(got))
	}

	digest := func() string {
		a := &v1alpha1.PrivateApp{}
		must(t, s.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "syncer"}, a))
		return a.Status.Token.Digest
	}
	// rotate --later, then expire the old token now.
	before := digest()
	contains("rotate --later", ok("rotate", "syncer", "--later", "--grace", "24h"), "created (Delayed)", "keeps working until", "rotation expire-now syncer")
	contains("home during the grace period", ok(), "syncer  GracePeriodEnding")
	contains("rotation expire-now", ok("rotation", "expire-now", "syncer"), "is Completed", "no longer works")
	if digest() == before {
		t.Error("rotate --later did not change the token")
	}
	// rotate --later, then cancel: the token before is current again.
	before = digest()
	ok("rotate", "syncer", "--later")
	contains("rotation cancel", ok("rotation", "cancel", "syncer"), "is Cancelled")
	if digest() != before {
		t.Error("after cancel, the current token is not the one before the rotation")
	}
	// rotate --now: the token is revoked.
	current := ok("token", "syncer")
	contains("rotate --now", ok("rotate", "syncer", "--now"), "created (Immediate)", "Every earlier token of the app is revoked")
	waitUntil(t, ctx, "the rotated-away token is refused", func() bool { return checkStatus(s.tokenService, strings.TrimSpace(current)) == 401 })
	tok = strings.TrimSpace(ok("token", "syncer"))
	tokens = append(tokens, strings.TrimSpace(current), tok)

	// suspend and reconnect.
	contains("suspend", ok("suspend", "syncer"), "is Disconnected")
	if code := checkStatus(s.tokenService, tok); code != 403 {
		t.Errorf("a check with a suspended app's token: %d, want 403", code)
	}
	contains("suspend again", ok("suspend", "syncer"), "already Disconnected")
	contains("reconnect", ok("reconnect", "syncer"), "is Connected")
	waitUntil(t, ctx, "the reconnected app's token works", func() bool { return checkStatus(s.tokenService, tok) == 200 })

	// logs, insights, usage, activity.
	contains("logs", ok("logs", "syncer", "--method", "POST", "--status", "2xx"), "TIME (UTC)", "POST", "201", "/crm/v3/objects/contacts")
	if out := ok("logs", "syncer", "--status", "5xx"); !strings.Contains(out, "No calls of syncer match") {
		t.Errorf("logs --status 5xx:\n%s", out)
	}
	var calls []map[string]any
	must(t, json.Unmarshal([]byte(ok("logs", "syncer", "-o", "json")), &calls))
	if len(calls) < 2 {
		t.Errorf("logs -o json: %d calls", len(calls))
	}
	contains("insights", ok("insights"), "DAY", "RECORD TYPE", "contacts", "1")
	contains("insights syncer --type contacts", ok("insights", "syncer", "--type", "contacts", "--action", "created"), "contacts", "1", "-")
	usage := ok("usage", "syncer", "--since", "6d")
	contains("usage", usage, "Calls per day of syncer (UTC):", "█", "DAY", "CALLS", "REFUSED", "OF DAILY LIMIT")
	var usageYAML []map[string]any
	must(t, yaml.Unmarshal([]byte(ok("usage", "-o", "yaml")), &usageYAML))
	if len(usageYAML) != 30 {
		t.Errorf("usage -o yaml: %d days, want 30", len(usageYAML))
	}
	act := ok("activity", "--app", "syncer", "--type", "TokenRotated")
	if n := strings.Count(act, "TokenRotated"); n != 3 {
		t.Errorf("activity --type TokenRotated --app syncer: %d rows, want 3 (later, later, now):\n%s", n, act)
	}
	contains("activity", ok("activity"), "RotationCancelled", "Disconnected", "Reconnected", "Installed")

	// Completion: the shell scripts, and app names for an app argument.
	contains("completion bash", ok("completion", "bash"), "__start_kubectl-privateapp")
	contains("completion of an app", ok("__complete", "describe", ""), "syncer", "reporting")

	// Mistakes: a message that says what to do, and the exit code.
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"describe", "nope"}, 1, "no PrivateApp \"nope\" in namespace \"default\""},
		{[]string{"rotate", "syncer"}, 2, "say --now"},
		{[]string{"rotate", "syncer", "--now", "--grace", "1h"}, 2, "--grace goes with --later"},
		{[]string{"rotation", "expire-now", "syncer"}, 1, "no rotation in its grace period"},
		{[]string{"-o", "xml"}, 2, "use table, json or yaml"},
		{[]string{"describe"}, 2, "describe takes one app name"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"--context", "nowhere"}, 1, "nowhere"},
	} {
		out, code := run(c.args...)
		if code != c.code || !strings.Contains(out, c.msg) {
			t.Errorf("kubectl privateapp %s: exit %d, want %d with %q:\n%s", strings.Join(c.args, " "), code, c.code, c.msg, out)
		}
	}
	for _, tk := range tokens {
		if strings.Contains(outputs.String(), tk) {
			t.Fatal("a token is in the output of a command other than `token`")
		}
	}
}
