package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
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
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	mgr := &componentProcess{t: t, bin: bins.Path(framework.Manager), kubeconfig: kubeconfig, log: filepath.Join(tmp, "manager.log")}
	mgr.start()
	defer mgr.kill()

	const ns = "default"
	app, _ := createReadyApp(t, ctx, c, ns, "crm", "crm.objects.contacts.read")

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
