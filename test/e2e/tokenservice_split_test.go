package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit/redistest"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestTokenServiceRunsWithoutSecretAccess runs the layout of the Helm chart:
// the controllers in one process, and the token service alone
// (cmd/token-service) as the chart's ServiceAccount, bound only to the
// generated token-service-role, which grants no access to Secrets, and
// under the chart's ValidatingAdmissionPolicy. The token service still
// validates tokens, writes usage, and never hits a permission error; but
// its identity cannot make a token valid by writing status.token.
func TestTokenServiceRunsWithoutSecretAccess(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	env, c, adminKubeconfig := startControlPlane(t, root, tmp)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	role := &rbacv1.ClusterRole{}
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "token_service_role.yaml"))
	must(t, err)
	must(t, yaml.UnmarshalStrict(data, role))
	for _, rule := range role.Rules {
		for _, res := range rule.Resources {
			if res == "secrets" || res == "*" {
				t.Fatalf("token-service-role grants %v on %s", rule.Verbs, res)
			}
		}
	}
	must(t, c.Create(ctx, role))
	const ns, sa = "privateapp-system", "pa-privateapp-operator-token-service"
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
	must(t, c.Create(ctx, account))
	must(t, c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "token-service"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}},
	}))
	// The chart's policy, as `helm install pa --namespace privateapp-system` renders it.
	h := chartRun{t: t, helm: tool(t, root, "helm"), chart: filepath.Join(root, "charts", "privateapp-operator"), tmp: tmp}
	policies := objects(t, h.must("template", "pa", h.chart, "--namespace", ns, "--show-only", "templates/policies.yaml"))
	createRendered(t, ctx, c, policies, ns, "ValidatingAdmissionPolicy/"+sa+"-status", "ValidatingAdmissionPolicyBinding/"+sa+"-status")
	// Every status field but the two the token service writes is guarded,
	// including fields added after the policy was written.
	policy := convert[admissionregistrationv1.ValidatingAdmissionPolicy](t, policies["ValidatingAdmissionPolicy/"+sa+"-status"])
	status := reflect.TypeFor[v1alpha1.PrivateAppStatus]()
	for i := range status.NumField() {
		field, _, _ := strings.Cut(status.Field(i).Tag.Get("json"), ",")
		guarded := slices.ContainsFunc(policy.Spec.Validations, func(v admissionregistrationv1.Validation) bool {
			return v.Expression == fmt.Sprintf("object.?status.?%s == oldObject.?status.?%s", field, field)
		})
		if writable := field == "usage" || field == "lastActivityTime"; guarded == writable {
			t.Errorf("status.%s: guarded by the token-service policy %v, want %v", field, guarded, !writable)
		}
	}
	saToken, tsClient := asServiceAccount(t, ctx, env, c, ns, sa)
	tsKubeconfig := filepath.Join(tmp, "token-service.kubeconfig")
	must(t, os.WriteFile(tsKubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster: {server: %s, certificate-authority-data: %s}
users:
- name: token-service
  user: {token: %s}
contexts:
- name: token-service
  context: {cluster: envtest, user: token-service}
current-context: token-service
`, env.Config.Host, base64.StdEncoding.EncodeToString(env.Config.CAData), saToken)), 0o600))

	controllers := &componentProcess{t: t, bin: bins.Path(framework.Manager), kubeconfig: adminKubeconfig, log: filepath.Join(tmp, "controllers.log")}
	controllers.start()
	defer controllers.kill()
	addr := freeAddress(t)
	tsLog := filepath.Join(tmp, "token-service.log")
	tokenService := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: tsKubeconfig, log: tsLog,
		args: []string{"--token-service-insecure", "--token-service-bind-address=" + addr,
			"--usage-flush-interval=200ms"}}
	tokenService.start()
	defer tokenService.kill()

	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}))
	app, tok := createReadyApp(t, ctx, c, "team-a", "crm", "crm.objects.contacts.read")
	check := func() int { return checkStatus(addr, tok) }
	waitUntil(t, ctx, "the token service accepts the token", func() bool { return check() == http.StatusOK })
	waitUntil(t, ctx, "the token service writes usage into status", func() bool {
		return c.Get(ctx, client.ObjectKeyFromObject(app), app) == nil && app.Status.Usage != nil && app.Status.Usage.CallsToday > 0
	})
	// What a compromised token-service pod would try: make a token of its
	// own valid for years as the "previous" token of a grace period, or
	// mark a suspended app connected. RBAC lets it patch the status; the
	// policy refuses every field but usage and lastActivityTime.
	forged, err := token.New()
	must(t, err)
	for field, change := range map[string]func(*v1alpha1.PrivateApp){
		"status.token": func(a *v1alpha1.PrivateApp) {
			a.Status.Token.Previous = &v1alpha1.PreviousTokenStatus{Digest: forged.Digest().String(), ExpiresAt: metav1.NewTime(time.Now().AddDate(5, 0, 0))}
		},
		"status.conditions": func(a *v1alpha1.PrivateApp) { a.Status.Conditions = a.Status.Conditions[:0] },
		"status.connection": func(a *v1alpha1.PrivateApp) { a.Status.Connection = v1alpha1.ConnectionDisconnected },
	} {
		must(t, c.Get(ctx, client.ObjectKeyFromObject(app), app))
		base := app.DeepCopy()
		change(app)
		err := tsClient.Status().Patch(ctx, app, client.MergeFrom(base))
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "not "+field) {
			t.Errorf("the token service's identity patched %s: %v; want it forbidden by the policy", field, err)
		}
	}
	if code := checkStatus(addr, forged.Reveal()); code != http.StatusUnauthorized {
		t.Errorf("a token the token service's identity tried to plant answers %d, want 401", code)
	}
	// The usage it is there to write still goes through.
	must(t, c.Get(ctx, client.ObjectKeyFromObject(app), app))
	base := app.DeepCopy()
	app.Status.Usage.RefusedToday++
	if err := tsClient.Status().Patch(ctx, app, client.MergeFrom(base)); err != nil {
		t.Errorf("the token service's identity cannot write usage: %v", err)
	}

	must(t, c.Delete(ctx, app))
	waitUntil(t, ctx, "the deleted app's token is refused", func() bool { return check() == http.StatusUnauthorized })

	tokenService.kill()
	log, err := os.ReadFile(tsLog)
	must(t, err)
	for _, bad := range []string{"forbidden", "Forbidden", tok} {
		if strings.Contains(string(log), bad) {
			t.Errorf("the token service log contains %q", bad)
		}
	}
	if strings.Contains(string(log), "Starting Controller") {
		t.Error("the token-service-only process started controllers")
	}
}

// TestTokenServiceReplicasShareRateLimits runs two token-service replicas
// with --rate-limit-redis against one real redis-server: a burst spread over
// both gets exactly the app's limit for the window, not twice it.
func TestTokenServiceReplicasShareRateLimits(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	redisServer := redistest.Start(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	controllers := &componentProcess{t: t, bin: bins.Path(framework.Manager), kubeconfig: kubeconfig, log: filepath.Join(tmp, "controllers.log")}
	controllers.start()
	defer controllers.kill()
	var addrs []string
	for i := range 2 {
		addr := freeAddress(t)
		addrs = append(addrs, addr)
		p := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, fmt.Sprintf("token-service-%d.log", i)),
			args: []string{"--token-service-insecure", "--token-service-bind-address=" + addr,
				"--rate-limit-redis=" + redisServer.Addr()}}
		p.start()
		defer p.kill()
	}
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}))
	_, tok := createReadyApp(t, ctx, c, "team-a", "crm", "crm.objects.contacts.read")
	check := func(addr string) int { return checkStatus(addr, tok) }
	for _, addr := range addrs {
		waitUntil(t, ctx, "replica "+addr+" knows the token", func() bool { return check(addr) == http.StatusOK })
	}
	// Each burst starts early in a window nothing else has counted in, so
	// it has the window to itself; one that crosses into the next window
	// (a very slow moment) is thrown away and run again.
	window := func() int64 { return time.Now().UnixMilli() / 10_000 }
	var codes map[int]int
	for attempt := 0; ; attempt++ {
		used := window()
		for window() == used || time.Now().UnixMilli()%10_000 > 500 {
			time.Sleep(20 * time.Millisecond)
		}
		start := window()
		codes = map[int]int{}
		for i := range 160 {
			codes[check(addrs[i%2])]++
		}
		if window() == start {
			break
		}
		if attempt == 2 {
			t.Fatal("three bursts of 160 calls each crossed a 10-second window boundary")
		}
	}
	if codes[http.StatusOK] != 100 || codes[http.StatusTooManyRequests] != 60 {
		t.Fatalf("160 calls over two replicas with a limit of 100 per 10 s: %v, want 100 allowed and 60 refused", codes)
	}
}

// TestRestartedTokenServiceKeepsTheDay: a token service without Redis that
// restarts continues each account's day from what PrivateApp status
// records, instead of granting a fresh day's calls.
func TestRestartedTokenServiceKeepsTheDay(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	limits := filepath.Join(tmp, "limits.yaml")
	must(t, os.WriteFile(limits, []byte("editions:\n  tiny: {perTenSeconds: 100, perDay: 6}\n"), 0o600))

	controllers := &componentProcess{t: t, bin: bins.Path(framework.Manager), kubeconfig: kubeconfig, log: filepath.Join(tmp, "controllers.log")}
	controllers.start()
	defer controllers.kill()
	addr := freeAddress(t)
	tokenService := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--token-service-insecure", "--token-service-bind-address=" + addr,
			"--usage-flush-interval=200ms", "--limits-file=" + limits}}
	tokenService.start()
	defer tokenService.kill()

	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "small", Labels: map[string]string{"privateapps.dev/edition": "tiny"}}}))
	app, tok := createReadyApp(t, ctx, c, "small", "crm", "crm.objects.contacts.read")
	waitUntil(t, ctx, "the token service accepts the token", func() bool { return checkStatus(addr, tok) == http.StatusOK })
	for range 3 {
		if code := checkStatus(addr, tok); code != http.StatusOK {
			t.Fatalf("call under the day's limit: %d", code)
		}
	}
	waitUntil(t, ctx, "status records the day's 4 calls", func() bool {
		return c.Get(ctx, client.ObjectKeyFromObject(app), app) == nil && app.Status.Usage != nil && app.Status.Usage.CallsToday == 4
	})

	tokenService.kill()
	tokenService.start()
	waitUntil(t, ctx, "the restarted token service answers", func() bool { return checkStatus(addr, tok) != 0 })
	// The first answer above took the 5th call; one more is left of 6.
	codes := []int{}
	for range 3 {
		codes = append(codes, checkStatus(addr, tok))
	}
	if !slices.Equal(codes, []int{http.StatusOK, http.StatusTooManyRequests, http.StatusTooManyRequests}) {
		t.Errorf("after the restart, calls 6 to 8 of a day of 6 answered %v; want 200 then 429s", codes)
	}
}
