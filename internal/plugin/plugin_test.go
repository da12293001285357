package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// noKubeconfig points the plugin at a kubeconfig that does not exist, so a
// test never reads the machine's.
func noKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
}

// TestKubectlFlags: the plugin takes kubectl's own connection flags, so
// --as, --token and --server work as with kubectl.
func TestKubectlFlags(t *testing.T) {
	noKubeconfig(t)
	e := &env{out: &bytes.Buffer{}, errOut: &bytes.Buffer{}, now: time.Now}
	cmd := newCommand(e)
	if err := cmd.PersistentFlags().Parse([]string{"--server=https://api.example.invalid:6443", "--token=not-a-real-credential",
		"--as=alice@example.com", "--as-group=platform", "-n", "team-a", "--request-timeout=7s", "--insecure-skip-tls-verify"}); err != nil {
		t.Fatal(err)
	}
	loader := e.kube.ToRawKubeConfigLoader()
	cfg, err := loader.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://api.example.invalid:6443" || cfg.BearerToken != "not-a-real-credential" || cfg.Impersonate.UserName != "alice@example.com" ||
		strings.Join(cfg.Impersonate.Groups, ",") != "platform" || cfg.Timeout != 7*time.Second || !cfg.Insecure {
		t.Errorf("the client config does not carry the flags: host %q, impersonate %+v, timeout %v, insecure %v",
			cfg.Host, cfg.Impersonate, cfg.Timeout, cfg.Insecure)
	}
	if ns, _, err := loader.Namespace(); err != nil || ns != "team-a" {
		t.Errorf("namespace %q %v, want team-a", ns, err)
	}
}

// TestUsageErrors: every mistake on the command line exits 2 with what is
// wrong, before the plugin connects anywhere.
func TestUsageErrors(t *testing.T) {
	noKubeconfig(t)
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"an unknown command", []string{"rotat", "crm"}, `unknown command "rotat"`},
		{"an unknown flag", []string{"--frobnicate"}, "unknown flag: --frobnicate"},
		{"a flag without its value", []string{"describe", "crm", "-n"}, "flag needs an argument"},
		{"a command without its app", []string{"describe"}, "describe takes one app name"},
		{"two apps", []string{"token", "crm", "billing"}, "token takes one app name"},
		{"an unknown output", []string{"-o", "xml"}, `--output "xml": use table, json or yaml`},
		{"arguments to home", []string{"home", "crm"}, `unknown command "crm"`},
	} {
		var out, errOut bytes.Buffer
		if code := run(tc.args, &out, &errOut); code != ExitUsage || !strings.Contains(errOut.String(), tc.says) {
			t.Errorf("%s: exit %d, %q; want %d saying %q", tc.name, code, errOut.String(), ExitUsage, tc.says)
		}
	}
	// A failure that is not the command line's is exit 1.
	var out, errOut bytes.Buffer
	if code := run([]string{"home"}, &out, &errOut); code != ExitError || !strings.Contains(errOut.String(), "kubeconfig") {
		t.Errorf("no kubeconfig: exit %d %q, want %d saying what to set", code, errOut.String(), ExitError)
	}
}

// TestViews runs home and describe against apps in a fake API client, at a
// fixed time.
func TestViews(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	installed := metav1.NewTime(now.Add(-48 * time.Hour))
	ok := &v1alpha1.PrivateApp{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "crm"},
		Spec:       v1alpha1.PrivateAppSpec{DisplayName: "CRM sync", Scopes: []string{"crm.objects.contacts.read"}},
		Status: v1alpha1.PrivateAppStatus{Connection: v1alpha1.ConnectionConnected, InstalledBy: "alice@example.com", InstalledAt: &installed,
			HubID: 1000002, AppID: 1000001, InstalledByUserID: 1000003,
			Token: &v1alpha1.TokenStatus{Digest: "sha256:" + strings.Repeat("ab", 32), IssuedAt: installed}},
	}
	paused := &v1alpha1.PrivateApp{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing"},
		Spec:       v1alpha1.PrivateAppSpec{DisplayName: "Billing", Suspend: true},
		Status:     v1alpha1.PrivateAppStatus{Connection: v1alpha1.ConnectionDisconnected, InstalledBy: "bob@example.com", InstalledAt: &installed, DisconnectedAt: &installed},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ok, paused).WithStatusSubresource(ok, paused).Build()
	view := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		e := &env{out: &out, errOut: &errOut, now: func() time.Time { return now }, c: c, namespace: "team-a"}
		cmd := newCommand(e)
		cmd.SetArgs(args)
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}

	home := view()
	for _, want := range []string{"NEEDS ATTENTION (1)", "team-a/billing", "NAME", "crm", "Connected", "2026-12-04", "alice@example.com", "Disconnected"} {
		if !strings.Contains(home, want) {
			t.Errorf("home lacks %q:\n%s", want, home)
		}
	}
	var hv struct {
		NeedsAttention []map[string]any `json:"needsAttention"`
		Apps           []map[string]any `json:"apps"`
	}
	if err := json.Unmarshal([]byte(view("-o", "json")), &hv); err != nil || len(hv.Apps) != 2 || len(hv.NeedsAttention) != 1 {
		t.Errorf("home -o json: %v, %d apps and %d alerts, want 2 and 1", err, len(hv.Apps), len(hv.NeedsAttention))
	}

	desc := view("describe", "crm")
	for _, want := range []string{"crm (CRM sync)  namespace team-a", "Status:        Connected", "Installed:     ", "by alice@example.com",
		"HubSpot ids:   appId 1000001, hubId 1000002, userId 1000003", "digest:    sha256:abababababab…", "crm.objects.contacts.read"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
	if strings.Contains(view("describe", "billing"), "HubSpot ids:") {
		t.Error("describe shows HubSpot ids for an app that has none yet")
	}
}
