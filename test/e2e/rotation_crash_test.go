package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// TestRotationSurvivesKills runs a series of rotations against the manager
// binary while SIGKILLing it at random moments and starting it again. Every
// state a watch sees must be sound, and at the end every rotation must have
// finished with the Secret holding the one token status calls current.
//
// The seed is printed; E2E_SEED=<seed> replays a run, and
// `go test -count=N -run TestRotationSurvivesKills ./test/e2e` repeats it.
func TestRotationSurvivesKills(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("E2E_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	root := repoRoot(t)
	tmp := t.TempDir()
	managerBin := build(t, root, "./cmd", filepath.Join(tmp, "manager"))
	c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	mgr := &managerProcess{t: t, bin: managerBin, kubeconfig: kubeconfig, log: filepath.Join(tmp, "manager.log")}
	mgr.start()
	defer mgr.kill()

	const ns = "default"
	app := &v1alpha1.PrivateApp{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "crm"},
		Spec:       v1alpha1.PrivateAppSpec{DisplayName: "CRM", Scopes: []string{"crm.objects.contacts.read"}},
	}
	must(t, c.Create(ctx, app))
	waitUntil(t, ctx, "the app is Ready", func() bool {
		return c.Get(ctx, client.ObjectKeyFromObject(app), app) == nil &&
			meta.IsStatusConditionTrue(app.Status.Conditions, v1alpha1.ConditionReady)
	})

	obs := observe(t, ctx, c, ns)

	var rotations []string
	for i := range 14 {
		name := fmt.Sprintf("r%02d", i)
		switch action := rng.IntN(10); {
		case action < 4:
			createRotation(t, ctx, c, ns, name, v1alpha1.RotationImmediate, 0)
			rotations = append(rotations, name)
		case action < 8:
			createRotation(t, ctx, c, ns, name, v1alpha1.RotationDelayed, time.Duration(1+rng.IntN(3))*time.Second)
			rotations = append(rotations, name)
		default:
			// End a grace period, one way or the other, if one is running.
			for _, r := range rotations {
				rot := &v1alpha1.TokenRotation{}
				if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: r}, rot) == nil && rot.Status.Phase == v1alpha1.RotationGracePeriod &&
					!rot.Spec.ExpireOldTokenNow && !rot.Spec.Cancel {
					field := "expireOldTokenNow"
					if rng.IntN(2) == 0 {
						field = "cancel"
					}
					must(t, c.Patch(ctx, rot, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"`+field+`":true}}`))))
					break
				}
			}
		}
		// From just after the start (cache sync) to well into reconciling.
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		mgr.kill()
		mgr.start()
	}

	waitUntil(t, ctx, "every rotation finished and every grace period ended", func() bool {
		for _, r := range rotations {
			rot := &v1alpha1.TokenRotation{}
			if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: r}, rot) != nil {
				return false
			}
			switch rot.Status.Phase {
			case v1alpha1.RotationCompleted, v1alpha1.RotationCancelled, v1alpha1.RotationSuperseded, v1alpha1.RotationFailed:
			default:
				return false
			}
		}
		return c.Get(ctx, client.ObjectKeyFromObject(app), app) == nil && app.Status.Token.Previous == nil
	})

	// No token lost: the Secret holds the current token, and only it.
	secret := &corev1.Secret{}
	must(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "crm-token"}, secret))
	cur, err := token.Parse(string(secret.Data[v1alpha1.SecretTokenKey]))
	if err != nil {
		t.Fatalf("the Secret's token does not parse: %v", err)
	}
	if cur.Digest().String() != app.Status.Token.Digest {
		t.Errorf("the Secret holds %s, status calls %s current", cur.Digest(), app.Status.Token.Digest)
	}
	if _, ok := secret.Data[v1alpha1.SecretPreviousTokenKey]; ok {
		t.Error("previous-token is still in the Secret after every grace period ended")
	}
	if app.Status.Token.Pending != nil {
		t.Error("a pending token is left in status")
	}
	obs.check(t)
	t.Logf("%d rotations, %d kills, %d tokens seen in the Secret, %d app states checked", len(rotations), 14, obs.tokens(), obs.states())
}

// observer checks every app state a watch delivers and collects every token
// the Secret ever held, by digest.
type observer struct {
	mu         sync.Mutex
	inSecret   map[string]bool
	valid      map[string]bool
	strategy   map[string]v1alpha1.RotationStrategy
	revoked    map[string]bool
	immediate  map[string]bool
	violations []string
	seen       int
}

func observe(t *testing.T, ctx context.Context, c client.WithWatch, ns string) *observer {
	o := &observer{inSecret: map[string]bool{}, valid: map[string]bool{}, strategy: map[string]v1alpha1.RotationStrategy{},
		revoked: map[string]bool{}, immediate: map[string]bool{}}
	secrets, err := c.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns))
	must(t, err)
	apps, err := c.Watch(ctx, &v1alpha1.PrivateAppList{}, client.InNamespace(ns))
	must(t, err)
	rots, err := c.Watch(ctx, &v1alpha1.TokenRotationList{}, client.InNamespace(ns))
	must(t, err)
	go o.run(secrets, func(obj runtime.Object) {
		s := obj.(*corev1.Secret)
		for _, k := range []string{v1alpha1.SecretTokenKey, v1alpha1.SecretPreviousTokenKey} {
			if tok, err := token.Parse(string(s.Data[k])); err == nil {
				o.inSecret[tok.Digest().String()] = true
			}
		}
	})
	go o.run(rots, func(obj runtime.Object) {
		r := obj.(*v1alpha1.TokenRotation)
		o.strategy[r.Name] = r.Spec.Strategy
	})
	go o.run(apps, func(obj runtime.Object) {
		a := obj.(*v1alpha1.PrivateApp)
		tok := a.Status.Token
		if tok == nil {
			return
		}
		o.seen++
		valid := []string{tok.Digest}
		if tok.Previous != nil {
			valid = append(valid, tok.Previous.Digest)
		}
		for _, d := range valid {
			if o.revoked[d] {
				o.violations = append(o.violations, fmt.Sprintf("%s is valid again after an Immediate rotation revoked it", d))
			}
		}
		// An Immediate rotation leaves no other token valid, ever again.
		if o.strategy[tok.Rotation] == v1alpha1.RotationImmediate && !o.immediate[tok.Rotation] {
			o.immediate[tok.Rotation] = true
			if tok.Previous != nil {
				o.violations = append(o.violations, fmt.Sprintf("after Immediate rotation %s a previous token is still valid", tok.Rotation))
			}
			for d := range o.valid {
				if d != tok.Digest {
					o.revoked[d] = true
				}
			}
		}
		for _, d := range valid {
			o.valid[d] = true
		}
	})
	return o
}

func (o *observer) run(w watch.Interface, f func(runtime.Object)) {
	for ev := range w.ResultChan() {
		if ev.Type == watch.Added || ev.Type == watch.Modified {
			o.mu.Lock()
			f(ev.Object)
			o.mu.Unlock()
		}
	}
}

// check: every token status ever made valid was in the Secret at some point
// (status never trusts a token nobody holds), and no Immediate rotation left
// an earlier token valid.
func (o *observer) check(t *testing.T) {
	time.Sleep(500 * time.Millisecond) // let the last watch events arrive
	o.mu.Lock()
	defer o.mu.Unlock()
	for d := range o.valid {
		if !o.inSecret[d] {
			t.Errorf("status made %s valid, but no Secret ever held it", d)
		}
	}
	for _, v := range o.violations {
		t.Error(v)
	}
	if o.seen == 0 {
		t.Error("the watch saw no app state; the checks above checked nothing")
	}
}

func (o *observer) tokens() int { o.mu.Lock(); defer o.mu.Unlock(); return len(o.inSecret) }
func (o *observer) states() int { o.mu.Lock(); defer o.mu.Unlock(); return o.seen }

type managerProcess struct {
	t                    *testing.T
	bin, kubeconfig, log string
	// args replace the default of running without the token service.
	args []string
	cmd  *exec.Cmd
}

func (m *managerProcess) start() {
	m.t.Helper()
	logFile, err := os.OpenFile(m.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(m.t, err)
	args := m.args
	if args == nil {
		args = []string{"--token-service-bind-address="}
	}
	m.cmd = exec.Command(m.bin, append([]string{"--health-probe-bind-address=0"}, args...)...)
	m.cmd.Env = append(os.Environ(), "KUBECONFIG="+m.kubeconfig)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(m.t, m.cmd.Start())
}

func (m *managerProcess) kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	m.cmd = nil
}

func createRotation(t *testing.T, ctx context.Context, c client.Client, ns, name string, strategy v1alpha1.RotationStrategy, grace time.Duration) {
	t.Helper()
	rot := &v1alpha1.TokenRotation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.TokenRotationSpec{AppName: "crm", Strategy: strategy},
	}
	if grace > 0 {
		rot.Spec.GracePeriod = &metav1.Duration{Duration: grace}
	}
	must(t, c.Create(ctx, rot))
}

// startControlPlane starts envtest with the CRDs and returns a client and a
// kubeconfig file for the manager.
func startControlPlane(t *testing.T, root, dir string) (client.WithWatch, string) {
	_, c, kubeconfig := startControlPlaneWithEnv(t, root, dir)
	return c, kubeconfig
}

func startControlPlaneWithEnv(t *testing.T, root, dir string) (*envtest.Environment, client.WithWatch, string) {
	t.Helper()
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets(root),
	}
	cfg, err := env.Start()
	must(t, err)
	t.Cleanup(func() { _ = env.Stop() })
	user, err := env.AddUser(envtest.User{Name: "e2e-manager", Groups: []string{"system:masters"}}, nil)
	must(t, err)
	kc, err := user.KubeConfig()
	must(t, err)
	path := filepath.Join(dir, "kubeconfig")
	must(t, os.WriteFile(path, kc, 0o600))

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	must(t, err)
	return env, c, path
}

func waitUntil(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
