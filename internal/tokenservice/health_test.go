package tokenservice

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestIndexHealth: not ready before the listener; failing PrivateApp list
// and watch calls make the index stale, and readiness fails past the bound
// while the API server answers, but not while it answers nobody; a call
// that works (or an event) makes it current again. "Too old" answers,
// which a list follows at once, do not count.
func TestIndexHealth(t *testing.T) {
	clock := clocktesting.NewFakeClock(t0)
	var apiDown error
	h := &IndexHealth{Clock: clock, Bound: 15 * time.Second, APIServerAnswers: func(context.Context) error { return apiDown }}
	req := httptest.NewRequest("GET", "/readyz", nil)
	if err := h.Check(req); err == nil || !strings.Contains(err.Error(), "not listening") {
		t.Fatalf("before the listener: %v", err)
	}
	h.Listening()
	var watchErr error
	lw := &reportingListWatch{h: h, ListWatch: &toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) { return nil, watchErr },
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			if watchErr != nil {
				return nil, watchErr
			}
			return watch.NewFake(), nil
		},
	}}
	ctx := context.Background()
	call := func(err error) {
		watchErr = err
		_, _ = lw.WatchWithContext(ctx, metav1.ListOptions{})
	}
	call(apierrors.NewResourceExpired("too old resource version"))
	call(apierrors.NewGone("gone")) //nolint:staticcheck // SA1019: old servers still answer 410 Gone
	clock.Step(time.Minute)
	if d := h.Stale(); d != 0 {
		t.Fatalf("'too old' answers made the index stale: %s", d)
	}

	// A dropped connection wraps io.EOF; client-go retries such a watch
	// within the reflector, and only these calls see it.
	call(&url.Error{Op: "Get", URL: "https://api/apis/privateapps.dev/v1alpha1/privateapps", Err: io.EOF})
	clock.Step(10 * time.Second)
	watchErr = errors.New("connection refused")
	_, _ = lw.ListWithContext(ctx, metav1.ListOptions{})
	if d, err := h.Stale(), h.Check(req); d != 10*time.Second || err != nil {
		t.Fatalf("within the bound: stale %s, ready %v", d, err)
	}
	clock.Step(6 * time.Second)
	if err := h.Check(req); err == nil || !strings.Contains(err.Error(), "--token-index-stale-bound") {
		t.Fatalf("past the bound with the API server answering: %v", err)
	}
	apiDown = errors.New("dial tcp: connection refused")
	if err := h.Check(req); err != nil {
		t.Fatalf("past the bound with the API server answering nobody: %v", err)
	}
	apiDown = nil
	call(nil) // a watch that opens
	if d, err := h.Stale(), h.Check(req); d != 0 || err != nil {
		t.Fatalf("after a watch that works: stale %s, ready %v", d, err)
	}
	call(errors.New("connection refused"))
	clock.Step(time.Minute)
	h.Observed()
	if d := h.Stale(); d != 0 {
		t.Fatalf("after an event: stale %s", d)
	}
}

// TestDroppedWatchIsAFailure: client-go answers a dropped connection with
// an empty watch and no error, which is a failure; an open watch is
// current at once; when it ends, the index is stale until the next call
// works.
func TestDroppedWatchIsAFailure(t *testing.T) {
	clock := clocktesting.NewFakeClock(t0)
	h := &IndexHealth{Clock: clock}
	if _, err := h.watched(watch.NewEmptyWatch(), nil); err != nil {
		t.Fatal(err)
	}
	clock.Step(time.Second)
	if d := h.Stale(); d != time.Second {
		t.Fatalf("after a dropped watch: stale %s, want 1s", d)
	}
	fake := watch.NewFake()
	w, _ := h.watched(fake, nil)
	if d := h.Stale(); d != 0 {
		t.Fatalf("with a watch open: stale %s", d)
	}
	go fake.Add(&metav1.PartialObjectMetadata{})
	if ev := <-w.ResultChan(); ev.Type != watch.Added {
		t.Fatalf("the event passed on as %v", ev.Type)
	}
	fake.Stop() // the server ends the watch
	for range w.ResultChan() {
	}
	clock.Step(time.Second)
	if d := h.Stale(); d != time.Second {
		t.Fatalf("after the watch ended: stale %s, want 1s until the next call", d)
	}
	next, _ := h.watched(watch.NewFake(), nil)
	defer next.Stop()
	if d := h.Stale(); d != 0 {
		t.Fatalf("after the next watch opened: stale %s", d)
	}
}
