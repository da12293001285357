package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
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

	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit/redistest"
)

// TestTokenServiceRunsWithoutSecretAccess runs the layout of the Helm chart:
// the controllers in one process, and the token service alone
// (--run-controllers=false) as a user bound only to the generated
// token-service-role, which grants no access to Secrets. The token service
// still validates tokens, writes usage, and never hits a permission error.
func TestTokenServiceRunsWithoutSecretAccess(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	managerBin := build(t, root, "./cmd", filepath.Join(tmp, "manager"))
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
	must(t, c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "token-service"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "token-service"}},
	}))
	user, err := env.AddUser(envtest.User{Name: "token-service"}, nil)
	must(t, err)
	kc, err := user.KubeConfig()
	must(t, err)
	tsKubeconfig := filepath.Join(tmp, "token-service.kubeconfig")
	must(t, os.WriteFile(tsKubeconfig, kc, 0o600))

	controllers := &managerProcess{t: t, bin: managerBin, kubeconfig: adminKubeconfig, log: filepath.Join(tmp, "controllers.log")}
	controllers.start()
	defer controllers.kill()
	addr := freeAddress(t)
	tsLog := filepath.Join(tmp, "token-service.log")
	tokenService := &managerProcess{t: t, bin: managerBin, kubeconfig: tsKubeconfig, log: tsLog,
		args: []string{"--run-controllers=false", "--token-service-insecure", "--token-service-bind-address=" + addr,
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
	managerBin := build(t, root, "./cmd", filepath.Join(tmp, "manager"))
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	redisServer := redistest.Start(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	controllers := &managerProcess{t: t, bin: managerBin, kubeconfig: kubeconfig, log: filepath.Join(tmp, "controllers.log")}
	controllers.start()
	defer controllers.kill()
	var addrs []string
	for i := range 2 {
		addr := freeAddress(t)
		addrs = append(addrs, addr)
		p := &managerProcess{t: t, bin: managerBin, kubeconfig: kubeconfig, log: filepath.Join(tmp, fmt.Sprintf("token-service-%d.log", i)),
			args: []string{"--run-controllers=false", "--token-service-insecure", "--token-service-bind-address=" + addr,
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
