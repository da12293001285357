package calllog

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

func TestRedactQuery(t *testing.T) {
	tok := newToken(t)
	r := NewRedactor("session")
	for _, c := range []struct{ name, in, want string }{
		{"plain", "properties=email&limit=10", "properties=email&limit=10"},
		{"listed by default", "hapikey=abc&limit=1", "hapikey=REDACTED&limit=1"},
		{"listed by the admin, any case", "Session=abc", "Session=REDACTED"},
		{"an app token in any parameter", "q=" + tok, "q=REDACTED"},
		{"an app token as a name", tok, token.Redacted},
		{"a JWT", "assertion=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "assertion=REDACTED"},
		{"an API key", "x=AbCdEf0123456789AbCdEf0123456789xy", "x=REDACTED"},
		{"a UUID is kept", "id=3f2b6c1e-8a4d-4f3b-9c2a-1d5e7f9a0b1c", "id=3f2b6c1e-8a4d-4f3b-9c2a-1d5e7f9a0b1c"},
		{"a lower-case digest is kept", "sha=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "sha=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{"an encoded token", "q=" + strings.Replace(tok, "_", "%5F", 1), "q=REDACTED"},
		{"unparseable", "a=%zz&b=1", "REDACTED&b=1"},
		{"a sensitive parameter after a semicolon", "a=1;hapikey=abc;b=2", "a=1;hapikey=REDACTED;b=2"},
		{"a token after a semicolon", "a=1;q=" + tok, "a=1;q=REDACTED"},
		{"an encoded token as a name", strings.Replace(tok, "_", "%5F", 1) + "=1&b=2", "REDACTED&b=2"},
		{"empty", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := r.Query(c.in); got != c.want {
				t.Errorf("Query(%q) = %q, want %q", token.Redact(c.in), got, c.want)
			}
		})
	}
	for _, c := range []struct{ in, want string }{
		{"/v3/" + tok + "/x", "/v3/" + token.Redacted + "/x"},
		{"/v3/" + strings.Replace(tok, "_", "%5F", 1) + "/x", "/v3/" + token.Redacted + "/x"},
		{"/v3/%70" + tok[1:] + "/x", "/v3/" + token.Redacted + "/x"},
		{"/v3/a%2Fb/%zz/c%20d", "/v3/a%2Fb/" + token.Redacted + "/c%20d"},
		{"/crm/v3/objects/contacts/1", "/crm/v3/objects/contacts/1"},
	} {
		if got := r.Path(c.in); got != c.want {
			t.Errorf("Path(%q) = %q, want %q", token.Redact(c.in), token.Redact(got), c.want)
		}
	}
	for in, want := range map[string]string{"user:" + tok + "@api.example.com": "api.example.com", "api.example.com:8443": "api.example.com:8443"} {
		if got := r.Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", token.Redact(in), token.Redact(got), want)
		}
	}
}

func TestMerge(t *testing.T) {
	at := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	check := Entry{ID: "1", Time: at.Add(time.Millisecond), Method: "GET", Route: "crm/x", Code: 200, DecidedBy: DecidedByTokenService, Reason: ReasonAllowed}
	gw := Entry{ID: "1", Time: at, Method: "GET", Path: "/x", Code: 500, DecidedBy: DecidedByUpstream, Latency: time.Second, Final: true}
	for _, got := range []Entry{Merge(check, gw), Merge(gw, check)} {
		if got.Code != 500 || got.DecidedBy != DecidedByUpstream || !got.Final || got.Route != "crm/x" || got.Path != "/x" ||
			!got.Time.Equal(at) || got.Latency != time.Second {
			t.Errorf("merged %+v", got)
		}
	}
	refused := check
	refused.Code, refused.Reason, refused.Final = 403, "missing_scope", true
	if got := Merge(refused, gw); got.Code != 403 || got.Reason != "missing_scope" || got.DecidedBy != DecidedByTokenService {
		t.Errorf("a later report overrode a refusal: %+v", got)
	}
}

func TestCursor(t *testing.T) {
	e := Entry{ID: "a/b:c", Time: time.UnixMilli(1700000000123), Namespace: "ns", App: "app"}
	c, err := DecodeCursor(EncodeCursor(e))
	if err != nil || c.TimeMillis != 1700000000123 || c.ID != "a/b:c" || c.Namespace != "ns" || c.App != "app" {
		t.Fatalf("round trip: %+v, %v", c, err)
	}
	for _, bad := range []string{"!!", "", EncodeCursor(e)[:4]} {
		if _, err := DecodeCursor(bad); !errors.Is(err, ErrInvalidContinue) {
			t.Errorf("DecodeCursor(%q) = %v", bad, err)
		}
	}
}

// blockingWriter holds every write until released, and records what it got.
type blockingWriter struct {
	mu      sync.Mutex
	release chan struct{}
	got     []Entry
	fail    bool
}

func (w *blockingWriter) Write(ctx context.Context, entries []Entry) error {
	select {
	case <-w.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return errors.New("down")
	}
	w.got = append(w.got, entries...)
	return nil
}

func (w *blockingWriter) entries() []Entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Entry(nil), w.got...)
}

// TestQueueNeverBlocks: with the writer stuck, Add returns at once and
// drops what does not fit; at a graceful stop the queued entries are
// written, redacted.
func TestQueueNeverBlocks(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	q := NewQueue(w, QueueOptions{Size: 10, Batch: 4, Interval: time.Hour}, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = q.Start(ctx); close(done) }()
	before := testutil.ToFloat64(Dropped.WithLabelValues("queue_full"))
	tok := newToken(t)
	start := time.Now()
	for i := 0; i < 100; i++ {
		q.Add(Entry{ID: "x", Time: time.Now(), Namespace: "ns", App: "a", Path: "/p", Query: "access_token=" + tok})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("100 Adds against a stuck writer took %v", d)
	}
	// The worker holds one full batch (4) and is stuck writing it; the
	// channel holds 10; the rest are dropped.
	dropped := testutil.ToFloat64(Dropped.WithLabelValues("queue_full")) - before
	if dropped < 80 || dropped > 90 {
		t.Errorf("%v entries counted as dropped, want 86 give or take the worker's take", dropped)
	}
	close(w.release)
	cancel()
	<-done
	got := w.entries()
	if len(got)+int(dropped) != 100 {
		t.Errorf("%d written + %v dropped != 100: entries queued at stop were lost", len(got), dropped)
	}
	for _, e := range got {
		if strings.Contains(e.Query, tok) || e.Query != "access_token=REDACTED" {
			t.Fatalf("the queue wrote the query %q", token.Redact(e.Query))
		}
	}
}

// TestQueueBoundsBytes: what a sender puts into entries cannot make the
// queue hold more than its bytes bound; entries from outside the process
// are cut (and redacted) before they wait, so a batch of huge URLs waits
// as entries of their limits.
func TestQueueBoundsBytes(t *testing.T) {
	q := NewQueue(&blockingWriter{release: make(chan struct{})}, QueueOptions{Size: 1000, MaxBytes: 64 << 10}, logr.Discard())
	huge := strings.Repeat("a", 1<<20)
	for range 10 {
		q.Add(Entry{ID: "raw", Namespace: "ns", App: "a", Path: "/" + huge})
	}
	if q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("%d entries of a megabyte each wait (%d bytes) in a queue bounded at 64 KiB", q.Len(), q.Bytes())
	}
	tok := newToken(t)
	in := q.Sanitizing()
	for range 100 {
		in.Add(Entry{ID: "cut", Time: time.Now(), Namespace: "ns", App: "a", Path: "/" + huge, Query: "access_token=" + tok + "&q=" + huge})
	}
	if q.Len() == 0 || q.Bytes() > 64<<10 {
		t.Fatalf("%d cut entries wait, %d bytes, want some and at most 64 KiB", q.Len(), q.Bytes())
	}
	e := <-q.ch
	if len(e.Path) > MaxPathLength || len(e.Query) > MaxQueryLength || strings.Contains(e.Query, tok) {
		t.Errorf("an entry waits with a path of %d bytes, a query of %d, token redacted: %v", len(e.Path), len(e.Query), !strings.Contains(e.Query, tok))
	}
}

func newToken(t *testing.T) string {
	tok, err := token.New()
	if err != nil {
		t.Fatal(err)
	}
	return tok.Reveal()
}

// flakyWriter fails its first writes, then keeps what it gets.
type flakyWriter struct {
	mu       sync.Mutex
	failures int
	got      []Entry
	err      error
}

func (w *flakyWriter) Write(_ context.Context, entries []Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failures > 0 {
		w.failures--
		return w.err
	}
	w.got = append(w.got, entries...)
	return nil
}

func (w *flakyWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got)
}

// TestQueueWaitsForTheStore: entries queued while the store is down are
// written when it is back; a batch the writer refuses for good is dropped.
func TestQueueWaitsForTheStore(t *testing.T) {
	for _, c := range []struct {
		name     string
		failures int
		err      error
		want     int
	}{
		{"down for a while", 8, errors.New("connection refused"), 50},
		{"refused for good", 1000, &PermanentError{Err: errors.New("400 Bad Request")}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := &flakyWriter{failures: c.failures, err: c.err}
			q := NewQueue(w, QueueOptions{Batch: 100, Interval: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}, logr.Discard())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = q.Start(ctx); close(done) }()
			for range 50 {
				q.Add(Entry{ID: "x", Time: time.Now()})
			}
			deadline := time.Now().Add(5 * time.Second)
			for c.want > 0 && w.count() < c.want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if c.want == 0 {
				time.Sleep(200 * time.Millisecond)
			}
			cancel()
			<-done
			if got := w.count(); got != c.want {
				t.Errorf("%d entries written, want %d", got, c.want)
			}
		})
	}
}
