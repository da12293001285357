package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestLeaderFailover runs two manager replicas with leader election and
// SIGKILLs the leader while 200 apps (in 10 namespaces) are created and
// rotated: the standby takes over within 20 s, no app gets two tokens (its
// status records exactly one per issue: the first, and one per rotation;
// and never one its Secret did not hold), no token is lost (every Secret
// holds the token status calls current), and every rotation ends Completed.
// A token a leader wrote into a Secret and was killed before recording never
// worked; the next leader replaces it rather than adopt a token it cannot
// tell from one planted by someone who may write Secrets (docs/security.md).
//
// `make test` kills once, with the default lease timings. `make test-chaos`
// (PRIVATEAPPS_CHAOS_KILLS=200) kills the leader 200 times with short
// leases, starting each killed replica again, while rotations go on. The
// seed is printed; E2E_SEED=<seed> replays a run.
func TestLeaderFailover(t *testing.T) {
	kills := 1
	if s := os.Getenv("PRIVATEAPPS_CHAOS_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("E2E_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d, %d kills", seed, kills)
	rng := rand.New(rand.NewPCG(seed, seed))
	// The default timings in the short mode (the 20 s promise is theirs);
	// short ones make 200 kills take minutes, not an hour.
	lease := []string{}
	takeover := 20 * time.Second
	if kills > 1 {
		lease = []string{"--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=500ms"}
		takeover = 6 * time.Second
	}

	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(5+kills/10)*time.Minute)
	defer cancel()

	replicas := make([]*componentProcess, 2)
	for i := range replicas {
		replicas[i] = &componentProcess{t: t, bin: bins.Path(framework.Manager), kubeconfig: kubeconfig, log: filepath.Join(tmp, fmt.Sprintf("replica-%d.log", i)),
			args: append([]string{"--leader-elect", "--operator-namespace=default"}, lease...)}
		replicas[i].start()
		defer replicas[i].kill()
	}
	// acquired counts each replica's "Successfully acquired lease" lines.
	acquired := func(i int) int {
		b, _ := os.ReadFile(replicas[i].log)
		return strings.Count(string(b), "Successfully acquired lease")
	}
	// The first leader is the one that logged an acquisition; after each
	// kill, the other one, once it logs its next.
	leader := func() int {
		for i := range replicas {
			if acquired(i) > 0 {
				return i
			}
		}
		return -1
	}
	for deadline := time.Now().Add(time.Minute); leader() < 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			for i := range replicas {
				b, _ := os.ReadFile(replicas[i].log)
				t.Logf("replica %d's log:\n%s", i, b)
			}
			t.Fatal("no replica leads after a minute")
		}
	}

	const namespaces, perNamespace = 10, 20
	var names []client.ObjectKey
	for n := range namespaces {
		ns := fmt.Sprintf("failover-%02d", n)
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		for a := range perNamespace {
			names = append(names, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("app-%02d", a)})
		}
	}
	tokens := watchTokens(t, ctx, c, names)

	// The workload: every app created, and rotations of apps that hold a
	// token and have no rotation under way, until stopped.
	var mu sync.Mutex
	rotations := map[client.ObjectKey][]string{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, key := range names {
			if err := c.Create(ctx, &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
				Spec: v1alpha1.PrivateAppSpec{DisplayName: key.Name, Scopes: []string{"crm.objects.contacts.read"}}}); err != nil {
				t.Errorf("creating %s: %v", key, err)
				return
			}
			if i%4 == 0 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			key := names[rng.IntN(len(names))]
			if !rotatable(ctx, c, key, rotations[key]) {
				continue
			}
			name := fmt.Sprintf("%s-r%d", key.Name, len(rotations[key]))
			if err := c.Create(ctx, &v1alpha1.TokenRotation{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: name},
				Spec: v1alpha1.TokenRotationSpec{AppName: key.Name, Strategy: v1alpha1.RotationImmediate}}); err != nil {
				t.Errorf("creating rotation %s: %v", name, err)
				return
			}
			mu.Lock()
			rotations[key] = append(rotations[key], name)
			mu.Unlock()
		}
	}()

	created := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range rotations {
			n += len(r)
		}
		return n
	}
	// Kill in the middle of it: apps still being issued, rotations under way.
	waitUntil(t, ctx, "rotations are under way", func() bool { return created() >= 10 })

	var takeovers []time.Duration
	cur := leader()
	for k := range kills {
		// From soon after a leader starts to well into its work.
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		old := cur
		before := acquired(1 - old)
		replicas[old].kill()
		killed := time.Now()
		waitUntil(t, ctx, fmt.Sprintf("kill %d: the standby takes over", k+1), func() bool { return acquired(1-old) > before })
		takeovers = append(takeovers, time.Since(killed))
		if d := time.Since(killed); d > takeover {
			t.Errorf("kill %d: the standby took over after %s, over %s", k+1, d.Round(100*time.Millisecond), takeover)
		}
		replicas[old].start()
		cur = 1 - old
	}
	// And the new leader takes on more.
	after := created()
	waitUntil(t, ctx, "rotations go on after the last takeover", func() bool { return created() >= after+10 })
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	waitUntil(t, ctx, "every app is Ready and every rotation final", func() bool {
		for _, key := range names {
			app := &v1alpha1.PrivateApp{}
			if c.Get(ctx, key, app) != nil || !meta.IsStatusConditionTrue(app.Status.Conditions, v1alpha1.ConditionReady) ||
				app.Status.Token == nil || app.Status.Token.Pending != nil || len(rotations[key]) > 0 && app.Status.Token.Rotation != rotations[key][len(rotations[key])-1] {
				return false
			}
			for _, name := range rotations[key] {
				rot := &v1alpha1.TokenRotation{}
				if c.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: name}, rot) != nil || rot.Status.Phase == "" ||
					rot.Status.Phase == v1alpha1.RotationPending || rot.Status.Phase == v1alpha1.RotationGracePeriod {
					return false
				}
			}
		}
		return true
	})
	rotated, replaced := 0, 0
	for _, key := range names {
		for _, name := range rotations[key] {
			rot := &v1alpha1.TokenRotation{}
			must(t, c.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: name}, rot))
			if rot.Status.Phase != v1alpha1.RotationCompleted {
				t.Errorf("rotation %s/%s ended %s, want Completed", key.Namespace, name, rot.Status.Phase)
			}
			rotated++
		}
		app := &v1alpha1.PrivateApp{}
		must(t, c.Get(ctx, key, app))
		secret := &corev1.Secret{}
		must(t, c.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: app.Status.SecretName}, secret))
		cur, err := token.Parse(string(secret.Data[v1alpha1.SecretTokenKey]))
		switch {
		case err != nil:
			t.Errorf("%s: the Secret's token does not parse: %v", key, err)
		case cur.Digest().String() != app.Status.Token.Digest:
			t.Errorf("%s: the Secret holds %s, status calls %s current: a token was lost", key, cur.Digest(), app.Status.Token.Digest)
		}
		recorded, unrecorded := tokens.counts(key)
		if want := 1 + len(rotations[key]); recorded != want {
			t.Errorf("%s: status recorded %d different tokens over the test, want %d (one, and one per rotation)", key, recorded, want)
		}
		if unrecorded < 0 {
			t.Errorf("%s: status recorded a token its Secret never held", key)
		}
		replaced += max(unrecorded, 0)
	}
	t.Logf("%d apps, %d rotations, %d kills; takeovers %v; %d tokens written by a leader killed before it recorded them, replaced before any worked",
		len(names), rotated, kills, roundAll(takeovers), replaced)
}

// rotatable says whether key holds a token and its rotations so far are
// all final, so a new one issues exactly one token.
func rotatable(ctx context.Context, c client.Client, key client.ObjectKey, earlier []string) bool {
	app := &v1alpha1.PrivateApp{}
	if c.Get(ctx, key, app) != nil || app.Status.Token == nil || app.Status.Token.Pending != nil {
		return false
	}
	for _, name := range earlier {
		rot := &v1alpha1.TokenRotation{}
		if c.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: name}, rot) != nil || rot.Status.Phase != v1alpha1.RotationCompleted {
			return false
		}
	}
	return true
}

// tokenWatch collects, per app, the digests of every token its Secret
// held and of every token its status recorded as current.
type tokenWatch struct {
	mu       sync.Mutex
	inSecret map[client.ObjectKey]map[string]bool
	recorded map[client.ObjectKey]map[string]bool
}

func watchTokens(t *testing.T, ctx context.Context, c client.WithWatch, apps []client.ObjectKey) *tokenWatch {
	tw := &tokenWatch{inSecret: map[client.ObjectKey]map[string]bool{}, recorded: map[client.ObjectKey]map[string]bool{}}
	add := func(m map[client.ObjectKey]map[string]bool, key client.ObjectKey, digest string) {
		tw.mu.Lock()
		defer tw.mu.Unlock()
		if m[key] == nil {
			m[key] = map[string]bool{}
		}
		m[key][digest] = true
	}
	secrets, err := c.Watch(ctx, &corev1.SecretList{}, client.MatchingLabels{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue})
	must(t, err)
	go func() {
		for ev := range secrets.ResultChan() {
			s, ok := ev.Object.(*corev1.Secret)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			if tok, err := token.Parse(string(s.Data[v1alpha1.SecretTokenKey])); err == nil {
				add(tw.inSecret, client.ObjectKey{Namespace: s.Namespace, Name: strings.TrimSuffix(s.Name, "-token")}, tok.Digest().String())
			}
		}
	}()
	appWatch, err := c.Watch(ctx, &v1alpha1.PrivateAppList{})
	must(t, err)
	go func() {
		for ev := range appWatch.ResultChan() {
			if a, ok := ev.Object.(*v1alpha1.PrivateApp); ok && a.Status.Token != nil {
				add(tw.recorded, client.ObjectKeyFromObject(a), a.Status.Token.Digest)
			}
		}
	}()
	return tw
}

// counts returns how many tokens key's status recorded, and how many its
// Secret held that status never recorded.
func (tw *tokenWatch) counts(key client.ObjectKey) (recorded, unrecorded int) {
	time.Sleep(10 * time.Millisecond)
	tw.mu.Lock()
	defer tw.mu.Unlock()
	for d := range tw.inSecret[key] {
		if !tw.recorded[key][d] {
			unrecorded++
		}
	}
	for d := range tw.recorded[key] {
		if !tw.inSecret[key][d] {
			unrecorded = -1000 // status trusted a token no Secret held
		}
	}
	return len(tw.recorded[key]), unrecorded
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond)
	}
	return out
}
