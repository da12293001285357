package tokenservice

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

func TestIndexFollowsStatus(t *testing.T) {
	ix := NewIndex()
	cur, prev, next := mustNew(t), mustNew(t), mustNew(t)
	a := app("ns", "crm", cur, &prev, t0.Add(time.Hour), nil)
	ix.Set(a)
	for _, tc := range []struct {
		tok      token.Token
		found    bool
		previous bool
	}{{cur, true, false}, {prev, true, true}, {next, false, false}} {
		m, ok := ix.Lookup(tc.tok.Digest())
		if ok != tc.found || (ok && m.Previous != tc.previous) {
			t.Fatalf("Lookup: found %v previous %v, want %v %v", ok, m.Previous, tc.found, tc.previous)
		}
	}

	// A rotation: the new token is current, the grace period is over.
	ix.Set(app("ns", "crm", next, nil, time.Time{}, nil))
	if _, ok := ix.Lookup(cur.Digest()); ok {
		t.Fatal("the replaced token is still indexed")
	}
	if _, ok := ix.Lookup(prev.Digest()); ok {
		t.Fatal("the previous token is still indexed after its app dropped it")
	}
	// A pending token is not valid.
	inFlight := mustNew(t)
	pending := app("ns", "crm", next, nil, time.Time{}, nil)
	pending.Status.Token.Pending = &v1alpha1.PendingTokenStatus{Digest: inFlight.Digest().String(), Rotation: "r"}
	ix.Set(pending)
	if _, ok := ix.Lookup(inFlight.Digest()); ok {
		t.Fatal("a pending token is indexed")
	}
	if _, ok := ix.Lookup(next.Digest()); !ok {
		t.Fatal("the current token is not indexed")
	}
	// An app being deleted has no tokens.
	deleting := app("ns", "crm", next, nil, time.Time{}, nil)
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	ix.Set(deleting)
	if ix.Len() != 0 {
		t.Fatalf("an app being deleted still has %d tokens indexed", ix.Len())
	}
}

func TestIndexLookupDoesNotAllocate(t *testing.T) {
	ix, toks := indexOf(t, 100)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := ix.Lookup(toks[42].Digest()); !ok {
			t.Fatal("not found")
		}
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %.0f times, want 0", allocs)
	}
}

func indexOf(tb testing.TB, n int) (*Index, []token.Token) {
	ix := NewIndex()
	toks := make([]token.Token, n)
	for i := range n {
		toks[i] = mustNew(tb)
		prev := mustNew(tb)
		a := app(fmt.Sprintf("ns-%03d", i%50), fmt.Sprintf("app-%05d", i), toks[i], &prev, t0.Add(time.Hour), nil)
		a.Spec.Scopes = []string{"crm.objects.contacts.read", "crm.objects.deals.write", "crm.schemas.companies.read"}
		ix.Set(a)
	}
	return ix, toks
}

// BenchmarkIndex10k: lookup time at 10,000 apps (two tokens each), and the
// heap the index holds, per app, as a custom metric.
func BenchmarkIndex10k(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix, toks := indexOf(b, 10_000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	digests := make([]token.Digest, len(toks))
	for i, tk := range toks {
		digests[i] = tk.Digest()
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, ok := ix.Lookup(digests[i%len(digests)]); !ok {
			b.Fatal("not found")
		}
		i++
	}
	// After the loop: ResetTimer clears reported metrics.
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "MB-heap-10k-apps")
	runtime.KeepAlive(ix)
}

// A deleted app leaves neither tokens nor a rate-limit window behind: an app
// re-created under the same name starts with a fresh window.
func TestRemoveAppForgetsItsWindow(t *testing.T) {
	ix, lim := NewIndex(), ratelimit.New()
	tok := mustNew(t)
	a := app("ns", "crm", tok, nil, time.Time{}, nil)
	ix.Set(a)
	one := ratelimit.Limits{PerWindow: 1, PerDay: 100}
	if d := lim.Take(appKey("ns", "crm"), "ns", one, t0); !d.Allowed() {
		t.Fatalf("first call refused: %+v", d)
	}
	removeApp(ix, lim, toolscache.DeletedFinalStateUnknown{Key: "ns/crm", Obj: a})
	if _, ok := ix.Lookup(tok.Digest()); ok {
		t.Fatal("the deleted app's token is still indexed")
	}
	if d := lim.Take(appKey("ns", "crm"), "ns", one, t0); !d.Allowed() {
		t.Fatalf("the re-created app inherited the deleted one's window: %+v", d)
	}
}
