package tokenservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

var (
	indexWatchErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "privateapps_token_index_watch_errors_total",
		Help: "Failed list and watch calls of the token index's PrivateApp informer (it retries each with backoff).",
	})
	// health is the process's IndexHealth, which the stale gauge reads.
	health     atomic.Pointer[IndexHealth]
	indexStale = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "privateapps_token_index_stale_seconds",
		Help: "How long the token index's watch of PrivateApps has been failing (0 while it is current): revocations made since may not be known to this replica.",
	}, func() float64 {
		if h := health.Load(); h != nil {
			return h.Stale().Seconds()
		}
		return 0
	})
)

func init() { metrics.Registry.MustRegister(indexWatchErrors, indexStale) }

// Export makes h the IndexHealth whose staleness the process's metrics
// report.
func (h *IndexHealth) Export() { health.Store(h) }

// IndexHealth says whether the token index is current. The index follows
// PrivateApps through an informer; when its watch fails, the informer keeps
// retrying with backoff and the index keeps the state of its last
// successful list or event, so a revoked token may still pass. IndexHealth
// notes when the informer's list and watch calls started failing and when
// one works again (or an event arrives), exports the time in
// privateapps_token_index_stale_seconds, and makes readiness fail once the
// index has been stale for longer than Bound while the API server answers
// (the fault is this replica's, and traffic should move to replicas that
// are current). An API server that answers nobody revokes nothing either,
// so then the replica stays ready and answers from what it knows.
type IndexHealth struct {
	Clock clock.PassiveClock
	// Bound is how long the index may be stale before readiness fails;
	// zero never fails it.
	Bound time.Duration
	// APIServerAnswers asks the API server something cheap; an error
	// means it does not answer this replica.
	APIServerAnswers func(context.Context) error

	listening atomic.Bool

	mu           sync.Mutex
	failingSince time.Time
}

// Listening records that the token service's listener is up (after the
// index synced).
func (h *IndexHealth) Listening() { h.listening.Store(true) }

// NewInformer is the cache's informer constructor: the PrivateApp
// informer's list and watch calls report to h (client-go retries a failing
// watch inside the reflector, where no error handler hears of it).
func (h *IndexHealth) NewInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration,
	indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	if l, ok := lw.(*toolscache.ListWatch); ok {
		if _, app := obj.(*v1alpha1.PrivateApp); app {
			lw = &reportingListWatch{ListWatch: l, h: h}
		}
	}
	return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
}

// reportingListWatch tells IndexHealth how each list and watch call went.
type reportingListWatch struct {
	*toolscache.ListWatch
	h *IndexHealth
}

func (l *reportingListWatch) List(o metav1.ListOptions) (runtime.Object, error) {
	obj, err := l.ListWatch.List(o) //nolint:staticcheck // SA1019: the ListerWatcher interface still has it
	l.h.called(err)
	return obj, err
}

func (l *reportingListWatch) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	obj, err := l.ListWatch.ListWithContext(ctx, o)
	l.h.called(err)
	return obj, err
}

func (l *reportingListWatch) Watch(o metav1.ListOptions) (watch.Interface, error) {
	w, err := l.ListWatch.Watch(o) //nolint:staticcheck // SA1019: as List
	return l.h.watched(w, err)
}

func (l *reportingListWatch) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := l.ListWatch.WatchWithContext(ctx, o)
	return l.h.watched(w, err)
}

// errDroppedWatch is a watch that ended at once with nothing: client-go
// answers a dropped connection with an empty watch, not an error.
var errDroppedWatch = errors.New("the watch ended at once, with no event: the connection to the API server was dropped")

// errWatchEnded marks the time between a watch's end and the informer's
// next call.
var errWatchEnded = errors.New("the watch ended")

// watched reports a watch call: an error, or a watch that is already
// closed (client-go's answer to a dropped connection), is a failure; an
// open watch works. When a watch that worked ends, the index is stale
// until the informer's next call works, which is at once after a normal
// end.
func (h *IndexHealth) watched(w watch.Interface, err error) (watch.Interface, error) {
	if err != nil || w == nil {
		h.called(err)
		return w, err
	}
	in := w.ResultChan()
	var first *watch.Event
	select {
	case ev, ok := <-in:
		if !ok {
			h.called(errDroppedWatch)
			return w, nil
		}
		first = &ev
	default:
	}
	h.called(nil)
	rw := &reportingWatch{inner: w, ch: make(chan watch.Event), done: make(chan struct{})}
	go rw.run(h, first)
	return rw, nil
}

type reportingWatch struct {
	inner watch.Interface
	ch    chan watch.Event
	done  chan struct{}
	once  sync.Once
}

func (w *reportingWatch) ResultChan() <-chan watch.Event { return w.ch }

func (w *reportingWatch) Stop() {
	w.once.Do(func() { close(w.done) })
	w.inner.Stop()
}

func (w *reportingWatch) run(h *IndexHealth, first *watch.Event) {
	defer close(w.ch)
	in := w.inner.ResultChan()
	for {
		var ev watch.Event
		if first != nil {
			ev, first = *first, nil
		} else {
			select {
			case e, ok := <-in:
				if !ok {
					h.called(errWatchEnded)
					return
				}
				ev = e
			case <-w.done:
				return
			}
		}
		select {
		case w.ch <- ev:
		case <-w.done:
			return
		}
	}
}

// called notes how a PrivateApp list or watch call went: one that worked
// makes the index current (a watch resumes from the last version it saw,
// so it replays what was missed); one that failed starts a stale period,
// unless it only said the version is too old (a list follows at once).
func (h *IndexHealth) called(err error) {
	if err != nil && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err)) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.failingSince = time.Time{}
		return
	}
	if !errors.Is(err, errWatchEnded) {
		indexWatchErrors.Inc()
	}
	if h.failingSince.IsZero() {
		h.failingSince = h.Clock.Now()
	}
}

// Observed records that the index received a PrivateApp event: its watch
// (or a new list) is working.
func (h *IndexHealth) Observed() {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.failingSince = time.Time{}
	h.mu.Unlock()
}

// Stale is how long the PrivateApp watch has been failing; zero while the
// index is current.
func (h *IndexHealth) Stale() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failingSince.IsZero() {
		return 0
	}
	return h.Clock.Since(h.failingSince)
}

// Check is the token service's readiness: the listener is up (so the
// index synced), and the index is not stale past Bound while the API
// server answers.
func (h *IndexHealth) Check(req *http.Request) error {
	if !h.listening.Load() {
		return errors.New("the token service is not listening yet (its index is syncing)")
	}
	stale := h.Stale()
	if h.Bound <= 0 || stale <= h.Bound {
		return nil
	}
	ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
	defer cancel()
	if h.APIServerAnswers != nil && h.APIServerAnswers(ctx) != nil {
		// Nobody hears from the API server: nothing is revoked anywhere,
		// and this replica's answers are as current as anyone's.
		return nil
	}
	return fmt.Errorf("the token index has not heard from the API server for %s (over --token-index-stale-bound %s) while the API server answers others; revocations since may be missed", stale.Round(time.Second), h.Bound)
}
