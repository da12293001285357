package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestHubSpotNodeClient points HubSpot's own Node client (@hubspot/api-client
// from the npm registry, pinned by testdata/hubspot-client/package-lock.json,
// unchanged but for its base path) at the token service run by the manager
// against a real API server, and reads access-token-info and the account's
// daily usage as a script written against HubSpot's documentation would:
// the ids are JSON numbers equal to those in the app's status, and the
// usage answer has HubSpot's shape.
func TestHubSpotNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("this test runs HubSpot's Node client: install Node.js 18 or later")
	}
	root := repoRoot(t)
	clientDir := hubspotClient(t, root)
	tmp := t.TempDir()
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	tsAddr := freeAddress(t)
	manager := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--token-service-bind-address=" + tsAddr, "--token-service-insecure"}}
	manager.start()
	defer manager.kill()
	startManager(t, kubeconfig, filepath.Join(tmp, "manager.log"))
	// Who installed it: the admission webhook records it (not run here).
	app := &v1alpha1.PrivateApp{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "crm-sync", Annotations: map[string]string{v1alpha1.InstalledByAnnotation: "alice@example.com"}},
		Spec:       v1alpha1.PrivateAppSpec{DisplayName: "CRM sync", Scopes: []string{"crm.objects.contacts.read"}},
	}
	must(t, c.Create(ctx, app))
	waitUntil(t, ctx, "the app is Ready with its numbers", func() bool {
		return c.Get(ctx, client.ObjectKeyFromObject(app), app) == nil && meta.IsStatusConditionTrue(app.Status.Conditions, v1alpha1.ConditionReady) &&
			app.Status.InstalledByUserID != 0
	})
	tok := appToken(t, ctx, c, app)
	if app.Status.AppID == 0 || app.Status.HubID == 0 || app.Status.InstalledByUserID == 0 {
		t.Fatalf("status has no numbers: hubId %d appId %d installedByUserId %d", app.Status.HubID, app.Status.AppID, app.Status.InstalledByUserID)
	}
	waitUntil(t, ctx, "the token service accepts the token", func() bool { return checkStatus(tsAddr, tok) == 200 })

	cmd := exec.CommandContext(ctx, node, filepath.Join(clientDir, "check.mjs"))
	cmd.Dir = clientDir
	cmd.Env = append(os.Environ(), "PAPP_TOKEN="+tok, "PAPP_BASE=http://"+tsAddr, "PAPP_HUB_ID="+strconv.FormatInt(app.Status.HubID, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("HubSpot's client: %v\n%s", err, token.Redact(stderr.String()))
	}
	var got struct {
		InfoStatus           int
		Types                map[string]string
		HubID, AppID, UserID int64
		SameHub              bool
		Scopes               []string
		UsageStatus          int
		Usage                struct{ Results []map[string]any }
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("the client printed %s: %v", token.Redact(string(out)), err)
	}
	if got.InfoStatus != 200 || got.Types["hubId"] != "number" || got.Types["appId"] != "number" || got.Types["userId"] != "number" || !got.SameHub {
		t.Fatalf("access-token-info through HubSpot's client: %s; want 200 with numeric ids", out)
	}
	if got.HubID != app.Status.HubID || got.AppID != app.Status.AppID || got.UserID != app.Status.InstalledByUserID ||
		len(got.Scopes) != 1 || got.Scopes[0] != "crm.objects.contacts.read" {
		t.Fatalf("access-token-info: %s; want hubId %d, appId %d, userId %d as in status", out, app.Status.HubID, app.Status.AppID, app.Status.InstalledByUserID)
	}
	if got.UsageStatus != 200 || len(got.Usage.Results) != 1 {
		t.Fatalf("daily usage through HubSpot's client: %s", out)
	}
	r := got.Usage.Results[0]
	for _, field := range []string{"name", "usageLimit", "currentUsage", "collectedAt", "fetchStatus", "resetsAt"} {
		if _, ok := r[field]; !ok {
			t.Errorf("daily usage lacks HubSpot's %q: %v", field, r)
		}
	}
	perDay := tokenservice.DefaultLimits().For("", false).PerDay
	if r["name"] != "private-apps-api-calls-daily" || r["usageLimit"] != float64(perDay) || r["currentUsage"] != float64(1) {
		t.Errorf("daily usage %v, want private-apps-api-calls-daily with the default edition's %d a day, and the one check made", r, perDay)
	}
}

// hubspotClient installs the pinned client into bin/hubspot-client (kept
// between runs; npm ci from the lock file when it changed) and returns the
// directory, with the check script beside it.
func hubspotClient(t *testing.T, root string) string {
	t.Helper()
	src := filepath.Join(root, "test", "e2e", "testdata", "hubspot-client")
	dir := filepath.Join(root, "bin", "hubspot-client")
	must(t, os.MkdirAll(dir, 0o755))
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	must(t, err)
	for _, f := range []string{"package.json", "package-lock.json", "check.mjs"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	// installed.lock is the lock file of the last npm ci that succeeded.
	marker := filepath.Join(dir, "installed.lock")
	if installed, err := os.ReadFile(marker); err == nil && bytes.Equal(installed, lock) {
		return dir
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci of HubSpot's Node client (the npm registry must be reachable): %v\n%s", err, out)
	}
	must(t, os.WriteFile(marker, lock, 0o644))
	return dir
}
