package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/webhook/webhooktest"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestWebhooksThroughTheManager runs the manager binary with its admission
// webhooks registered from config/webhook and its own CA
// (--self-signed-certs), and drives it with kubectl the way the docs do:
// the samples, an app over the cap refused with the message, the token,
// the token service, a rotation, and a delete that revokes the token.
func TestWebhooksThroughTheManager(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "privateapp-system"}}))

	// The generated webhook configurations, called by URL: this API server
	// has no Service network.
	webhookAddr := freeAddress(t)
	must(t, webhooktest.Register(ctx, c, filepath.Join(root, "config", "webhook", "manifests.yaml"), "privateapp", webhookAddr))

	tsAddr := freeAddress(t)
	_, port, _ := strings.Cut(webhookAddr, ":")
	mgr := &componentProcess{t: t, bin: bins.Path(framework.Manager), kubeconfig: kubeconfig, log: filepath.Join(tmp, "manager.log"),
		args: []string{"--max-apps-per-namespace=2", "--operator-namespace=privateapp-system",
			"--webhook-cert-dir=" + filepath.Join(tmp, "webhook-certs"), "--webhook-port=" + port,
			"--self-signed-certs", "--webhook-cert-extra-names=127.0.0.1"}}
	mgr.start()
	defer mgr.kill()
	tokenService := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--token-service-insecure", "--token-service-bind-address=" + tsAddr}}
	tokenService.start()
	defer tokenService.kill()
	must(t, webhooktest.WaitForCA(ctx, c, "privateapp", time.Minute))
	for _, name := range []string{"privateapp-ca", "privateapp-webhook-tls", "privateapp-token-service-tls"} {
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "privateapp-system", Name: name}, &corev1.Secret{}))
	}

	kubectl := func(args ...string) (string, error) { return framework.Kubectl(kubeconfig, args...) }
	// Three sample apps, a cap of two: the third is refused at admission.
	out, err := kubectl("apply", "-f", filepath.Join(root, "config", "samples"))
	if err == nil || !strings.Contains(out, `namespace "default" already has 2 private apps and the limit is 2`) {
		t.Fatalf("kubectl apply of three samples under a cap of two: %v\n%s", err, out)
	}
	if n := strings.Count(out, "privateapp.privateapps.dev/"); n != 2 {
		t.Fatalf("kubectl created %d apps, want 2:\n%s", n, out)
	}
	if out, err := kubectl("wait", "--for=condition=Ready", "privateapp/billing-sync", "-n", "default", "--timeout=60s"); err != nil {
		t.Fatalf("kubectl wait: %v\n%s", err, out)
	}
	app := &v1alpha1.PrivateApp{}
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "billing-sync"}, app))
	if app.Annotations[v1alpha1.InstalledByAnnotation] == "" || app.Status.InstalledBy != app.Annotations[v1alpha1.InstalledByAnnotation] {
		t.Errorf("installed-by %q, status.installedBy %q: the mutating webhook should record the kubectl user",
			app.Annotations[v1alpha1.InstalledByAnnotation], app.Status.InstalledBy)
	}
	if out, err := kubectl("annotate", "privateapp/billing-sync", "-n", "default", "--overwrite", v1alpha1.InstalledByAnnotation+"=mallory"); err == nil ||
		!strings.Contains(out, "installed-by") {
		t.Errorf("changing installed-by was not refused: %v\n%s", err, out)
	}
	// Suspending and reconnecting with kubectl: the activity log names who did it.
	for _, step := range []struct {
		suspend string
		state   v1alpha1.ConnectionState
	}{{"true", v1alpha1.ConnectionDisconnected}, {"false", v1alpha1.ConnectionConnected}} {
		if out, err := kubectl("patch", "privateapp/billing-sync", "-n", "default", "--type", "merge", "-p", `{"spec":{"suspend":`+step.suspend+`}}`); err != nil {
			t.Fatalf("kubectl patch suspend=%s: %v\n%s", step.suspend, err, out)
		}
		waitUntil(t, ctx, "billing-sync is "+string(step.state), func() bool {
			return c.Get(ctx, client.ObjectKeyFromObject(app), app) == nil && app.Status.Connection == step.state
		})
	}
	installer := app.Annotations[v1alpha1.InstalledByAnnotation]
	waitUntil(t, ctx, "the activity log names who disconnected and reconnected the app", func() bool {
		must(t, c.Get(ctx, client.ObjectKeyFromObject(app), app))
		by := map[v1alpha1.ActivityType]string{}
		for _, a := range app.Status.Activity {
			by[a.Type] = a.User
		}
		return by[v1alpha1.ActivityDisconnected] == installer && by[v1alpha1.ActivityReconnected] == installer
	})

	secretToken := func() string {
		s := &corev1.Secret{}
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "billing-sync-token"}, s))
		return string(s.Data[v1alpha1.SecretTokenKey])
	}
	tok := secretToken()
	sum := sha256.Sum256([]byte(tok))
	if app.Status.Token.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatal("the Secret's token does not match the digest in status")
	}
	check := func(tok string) int { return checkStatus(tsAddr, tok) }
	waitUntil(t, ctx, "the token service accepts the token", func() bool { return check(tok) == http.StatusOK })
	resp, err := http.Post("http://"+tsAddr+"/oauth/v2/private-apps/get/access-token-info", "application/json",
		strings.NewReader(`{"tokenKey":"`+tok+`"}`))
	must(t, err)
	var info map[string]any
	must(t, json.NewDecoder(resp.Body).Decode(&info))
	resp.Body.Close()
	must(t, c.Get(ctx, client.ObjectKeyFromObject(app), app))
	if resp.StatusCode != http.StatusOK || info["name"] != "billing-sync" || info["namespace"] != "default" || app.Status.HubID == 0 ||
		info["hubId"] != float64(app.Status.HubID) || info["appId"] != float64(app.Status.AppID) || info["userId"] != float64(app.Status.InstalledByUserID) {
		t.Fatalf("token info: %d %v, want the numbers in status %d, %d, %d", resp.StatusCode, info, app.Status.HubID, app.Status.AppID, app.Status.InstalledByUserID)
	}

	// A second Delayed rotation while one is in its grace period is refused
	// at admission, naming the first.
	if out, err := kubectl("apply", "-f", filepath.Join(root, "config", "samples", "rotation", "delayed.yaml")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := kubectl("wait", "--for=jsonpath={.status.phase}=GracePeriod", "tokenrotation/billing-sync-2026-11", "-n", "default", "--timeout=60s"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	second := `{"apiVersion":"privateapps.dev/v1alpha1","kind":"TokenRotation","metadata":{"name":"again","namespace":"default"},"spec":{"appName":"billing-sync","strategy":"Delayed"}}`
	cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig, "create", "-f", "-")
	cmd.Stdin = strings.NewReader(second)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "billing-sync-2026-11") {
		t.Errorf("a second Delayed rotation was not refused naming the first: %v\n%s", err, out)
	}
	// The leak path: Immediate revokes both tokens at once.
	if out, err := kubectl("apply", "-f", filepath.Join(root, "config", "samples", "rotation", "immediate.yaml")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := kubectl("wait", "--for=jsonpath={.status.phase}=Completed", "tokenrotation/billing-sync-leak", "-n", "default", "--timeout=60s"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitUntil(t, ctx, "the old token is refused after the Immediate rotation", func() bool { return check(tok) == http.StatusUnauthorized })
	rotated := secretToken()
	waitUntil(t, ctx, "the new token is accepted", func() bool { return check(rotated) == http.StatusOK })

	if out, err := kubectl("delete", "privateapp/billing-sync", "-n", "default", "--wait", "--timeout=60s"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitUntil(t, ctx, "the deleted app's token is refused", func() bool { return check(rotated) == http.StatusUnauthorized })

	mgr.kill()
	tokenService.kill()
	for _, p := range []*componentProcess{mgr, tokenService} {
		log, err := os.ReadFile(p.log)
		must(t, err)
		for _, secret := range []string{tok, rotated, "PRIVATE KEY"} {
			if strings.Contains(string(log), secret) {
				t.Errorf("%s contains a token or a key", filepath.Base(p.log))
			}
		}
	}
}
