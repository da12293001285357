package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/privateapps-dev/privateapp-operator/test/framework"
	authnv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// webhookCacheTTL is how long kube-apiserver caches the token service's
// answers (--authentication-token-webhook-cache-ttl). Its default is 2
// minutes: a revoked token keeps authenticating to the Kubernetes API that
// long unless the cluster admin lowers it.
const webhookCacheTTL = 2 * time.Second

// apiserverTokenCache is kube-apiserver's own cache of successful token
// authentications, on top of the webhook's: fixed at 10 s, with no flag
// (TokenSuccessCacheTTL in k8s.io/kubernetes/pkg/kubeapiserver/options).
const apiserverTokenCache = 10 * time.Second

// TestKubernetesAuthenticatesAppTokens: kube-apiserver configured with the
// token service as its webhook token authenticator accepts an app's token as
// user privateapp:<ns>:<name>, and refuses it once the app is deleted.
func TestKubernetesAuthenticatesAppTokens(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	tokenService := freeAddress(t)

	webhook := filepath.Join(tmp, "token-webhook.kubeconfig")
	must(t, os.WriteFile(webhook, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: privateapp-token-service
  cluster:
    server: http://%s/apis/authentication.k8s.io/v1/tokenreviews
users:
- name: kube-apiserver
contexts:
- name: webhook
  context: {cluster: privateapp-token-service, user: kube-apiserver}
current-context: webhook
`, tokenService)), 0o600))

	env, c, adminKubeconfig := startControlPlane(t, root, tmp, func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().
			Set("authentication-token-webhook-config-file", webhook).
			Set("authentication-token-webhook-cache-ttl", webhookCacheTTL.String()).
			Set("authentication-token-webhook-version", "v1")
	})
	cfg := env.Config

	mgr := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: adminKubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--token-service-bind-address=" + tokenService, "--token-service-insecure"}}
	mgr.start()
	defer mgr.kill()
	startManager(t, adminKubeconfig, filepath.Join(tmp, "manager.log"))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app, tokenText := createReadyApp(t, ctx, c, "default", "deployer", "k8s.deployments.write")

	// A kubeconfig with nothing but the app's token, as a workload would have.
	appKubeconfig := filepath.Join(tmp, "app.kubeconfig")
	must(t, os.WriteFile(appKubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster: {server: %s, certificate-authority-data: %s}
users:
- name: app
  user: {token: %s}
contexts:
- name: app
  context: {cluster: envtest, user: app}
current-context: app
`, cfg.Host, base64.StdEncoding.EncodeToString(cfg.CAData), tokenText)), 0o600))
	whoami := func() (string, []string, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", appKubeconfig, "auth", "whoami", "-o", "json").CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), string(tokenText)) {
				t.Fatal("kubectl printed the token")
			}
			return "", nil, fmt.Errorf("%v: %s", err, out)
		}
		var review struct {
			Status struct {
				UserInfo struct {
					Username string   `json:"username"`
					Groups   []string `json:"groups"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if err := json.Unmarshal(out, &review); err != nil {
			return "", nil, err
		}
		return review.Status.UserInfo.Username, review.Status.UserInfo.Groups, nil
	}

	var user string
	var groups []string
	var err error
	waitUntil(t, ctx, "kubectl auth whoami succeeds with the app's token", func() bool {
		user, groups, err = whoami()
		return err == nil
	})
	if user != "privateapp:default:deployer" {
		t.Fatalf("kubectl auth whoami: user %q, want privateapp:default:deployer", user)
	}
	for _, g := range []string{"privateapps", "privateapps:default"} {
		if !contains(groups, g) {
			t.Errorf("groups %v lack %q", groups, g)
		}
	}

	// Another service that authenticates its clients with a TokenReview
	// for its own audience must not accept an app token: the token
	// service is audience-unaware, so kube-apiserver accepts its answers
	// for the API server's own audiences only.
	for _, tc := range []struct {
		audiences []string
		want      bool
	}{{nil, true}, {[]string{"https://billing.internal.example"}, false}} {
		review := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tokenText, Audiences: tc.audiences}}
		must(t, c.Create(ctx, review))
		if review.Status.Authenticated != tc.want {
			t.Errorf("TokenReview for audiences %q: authenticated %v (status audiences %q, error %q), want %v",
				tc.audiences, review.Status.Authenticated, review.Status.Audiences, review.Status.Error, tc.want)
		}
	}

	must(t, c.Delete(ctx, app))
	deleted := time.Now()
	waitUntil(t, ctx, "the deleted app's token is refused by kube-apiserver", func() bool {
		_, _, err := whoami()
		return err != nil && strings.Contains(err.Error(), "Unauthorized")
	})
	since := time.Since(deleted)
	t.Logf("kube-apiserver refused the token %s after the delete (webhook cache %s, its own cache %s)", since, webhookCacheTTL, apiserverTokenCache)
	if bound := max(webhookCacheTTL, apiserverTokenCache) + 3*time.Second; since > bound {
		t.Errorf("refused only after %s; the caches allow at most %s", since, bound)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
