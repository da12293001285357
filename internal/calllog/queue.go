package calllog

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	queued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "privateapps_calllog_entries_queued_total",
		Help: "Call-log entries taken from the queue by its writer.",
	})
	written = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "privateapps_calllog_entries_written_total",
		Help: "Call-log entries written to the store (or sent to the process that holds it).",
	})
	// Dropped counts entries that never reach the log, by reason: queue_full
	// (the writer is behind or the store is down), write_failed (a batch
	// failed after its retries), refused_by_store (the store refused the
	// row itself), and the ingest endpoints' reasons.
	Dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "privateapps_calllog_entries_dropped_total",
		Help: "Call-log entries dropped, by reason; the calls themselves were answered as usual.",
	}, []string{"reason"})
	queueLength = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "privateapps_calllog_queue_length",
		Help: "Call-log entries waiting to be written.",
	})
)

// The queue's own reasons start at zero, so a dashboard or alert sees the
// series before the first drop.
func init() {
	for _, reason := range []string{"queue_full", "write_failed", DropRefusedByStore} {
		Dropped.WithLabelValues(reason)
	}
}

// DropRefusedByStore is the drop reason of a row the store refused.
const DropRefusedByStore = "refused_by_store"

// Collectors are the call log's metrics, for the process's registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{queued, written, Dropped, queueLength}
}

// QueueOptions shape a Queue; zero values take the defaults.
type QueueOptions struct {
	// Size bounds the entries waiting; more are dropped (default 16384:
	// half a second of calls at this machine's top rate, while the writer
	// takes them every 100 ms; a bigger buffer is scanned by every GC).
	Size int
	// Batch is the most entries written at once (default 1000).
	Batch int
	// Interval is the longest an entry waits for its batch (default 1 s).
	Interval time.Duration
	// Timeout bounds one write (default 5 s).
	Timeout time.Duration
	// MaxBackoff is the longest wait between tries of a failed batch
	// (default 10 s). A batch is tried until it is written or the writer
	// says it never will be (Permanent): while the store is down, entries
	// wait in the queue, and only what overflows it is lost.
	MaxBackoff time.Duration
	// Redactor removes secrets from paths and queries before they leave
	// the process (default NewRedactor()).
	Redactor *Redactor
	// MaxBytes bounds the text of the entries waiting (default 32 MiB);
	// more are dropped, as when Size is reached.
	MaxBytes int64
}

// Queue hands entries from the hot path to a Writer in batches. Add never
// blocks and never fails the call that made the entry: when the queue is
// full the entry is dropped and counted. Start writes until its context
// ends, then writes what is queued before it returns.
type Queue struct {
	w    Writer
	opts QueueOptions
	ch   chan Entry
	log  logr.Logger

	bytes      atomic.Int64 // the text of the entries in ch
	dropped    atomic.Int64
	lastReport atomic.Int64
	mu         sync.Mutex // serializes reports
}

// NewQueue makes a queue in front of w.
func NewQueue(w Writer, opts QueueOptions, log logr.Logger) *Queue {
	if opts.Size <= 0 {
		opts.Size = 1 << 14
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.Redactor == nil {
		opts.Redactor = NewRedactor()
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 32 << 20
	}
	return &Queue{w: w, opts: opts, ch: make(chan Entry, opts.Size), log: log}
}

// Add queues an entry, or drops it when the queue is full.
func (q *Queue) Add(e Entry) {
	n := e.textSize()
	if q.bytes.Add(n) > q.opts.MaxBytes {
		q.bytes.Add(-n)
		q.drop("queue_full", 1)
		return
	}
	select {
	case q.ch <- e:
	default:
		q.bytes.Add(-n)
		q.drop("queue_full", 1)
	}
}

// take accounts for an entry leaving the channel.
func (q *Queue) take(e Entry) Entry {
	q.bytes.Add(-e.textSize())
	return q.clean(e)
}

// Sanitizing is the queue for senders whose entries come from outside the
// process (the ingest endpoints): each is redacted and cut to the entry's
// limits before it waits, so that what waits is bounded by those limits,
// not by what a sender put into a batch.
func (q *Queue) Sanitizing() interface{ Add(Entry) } { return sanitizing{q} }

type sanitizing struct{ q *Queue }

func (s sanitizing) Add(e Entry) { s.q.Add(s.q.clean(e)) }

// textSize is about how many bytes the entry's text holds.
func (e *Entry) textSize() int64 {
	return int64(len(e.ID) + len(e.Namespace) + len(e.App) + len(e.Method) + len(e.Host) + len(e.Path) + len(e.Query) +
		len(e.Route) + len(e.RecordType) + len(e.RecordAction) + len(e.DecidedBy) + len(e.Reason) + len(e.Source) + len(e.Gateway))
}

// Bytes is the text of the entries waiting.
func (q *Queue) Bytes() int64 { return q.bytes.Load() }

// drop counts lost entries and says so in the log at most every 10 seconds.
func (q *Queue) drop(reason string, n int) {
	Dropped.WithLabelValues(reason).Add(float64(n))
	total := q.dropped.Add(int64(n))
	now := time.Now().UnixNano()
	last := q.lastReport.Load()
	if now-last < int64(10*time.Second) || !q.lastReport.CompareAndSwap(last, now) {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.log.Info("call-log entries dropped: the calls were answered as usual, but the log misses them", "reason", reason, "droppedSinceStart", total,
		"hint", "see privateapps_calllog_entries_dropped_total; the insights store may be down or slow")
}

// Len is the number of entries waiting.
func (q *Queue) Len() int { return len(q.ch) }

// NeedLeaderElection is false: every replica logs its own calls.
func (q *Queue) NeedLeaderElection() bool { return false }

// Start writes batches until ctx ends, then drains the queue.
//
// The writer polls rather than waiting on the channel: a receiver parked
// on the channel would be woken by every Add, and that hand-off, once per
// call, cost the checks more than everything else the log does. Polling,
// an Add is a buffered send that wakes nobody.
func (q *Queue) Start(ctx context.Context) error {
	poll := time.NewTicker(min(q.opts.Interval, pollInterval))
	defer poll.Stop()
	batch := make([]Entry, 0, q.opts.Batch)
	var oldest, retryAt time.Time
	failures := 0
	flush := func(ctx context.Context) bool {
		err := q.write(ctx, batch)
		switch {
		case err == nil:
		case IsPermanent(err):
			q.log.Error(err, "the call log refused a batch; dropping it", "entries", len(batch))
			q.drop("write_failed", len(batch))
		default:
			failures++
			backoff := min(q.opts.Interval<<min(failures-1, 10), q.opts.MaxBackoff)
			retryAt = time.Now().Add(backoff)
			if failures == 1 || failures%10 == 0 {
				q.log.Info("writing call-log entries failed; they wait in the queue and are tried again", "entries", len(batch),
					"queued", len(q.ch), "failures", failures, "retryIn", backoff.String(), "error", err.Error())
			}
			return false
		}
		failures, retryAt = 0, time.Time{}
		batch = batch[:0]
		return true
	}
	for {
		queueLength.Set(float64(len(q.ch)))
		select {
		case <-ctx.Done():
			q.drain(batch)
			return nil
		case <-poll.C:
		}
		now := time.Now()
		if now.Before(retryAt) {
			// A batch waiting for a retry takes nothing more: the queue
			// fills and Add drops at the edge, where it costs the hot path
			// nothing.
			continue
		}
		if failures > 0 && !flush(ctx) {
			continue
		}
		for {
			for len(batch) < q.opts.Batch {
				select {
				case e := <-q.ch:
					queued.Inc()
					if len(batch) == 0 {
						oldest = now
					}
					batch = append(batch, q.take(e))
					continue
				default:
				}
				break
			}
			full := len(batch) >= q.opts.Batch
			if len(batch) == 0 || (!full && now.Sub(oldest) < q.opts.Interval) {
				break
			}
			if !flush(ctx) || !full {
				break
			}
		}
	}
}

// pollInterval is how often the writer takes what was queued.
const pollInterval = 100 * time.Millisecond

// PermanentError is a write a Writer will never accept (a batch the
// ingest endpoint refuses as malformed): the queue drops it rather than
// trying again.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// drain writes what is left at a graceful stop, within one write timeout
// per batch.
func (q *Queue) drain(batch []Entry) {
	for {
	fill:
		for len(batch) < q.opts.Batch {
			select {
			case e := <-q.ch:
				batch = append(batch, q.take(e))
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		if err := q.write(context.Background(), batch); err != nil {
			n := len(batch) + len(q.ch)
			q.log.Error(err, "writing call-log entries at stop failed; they are lost", "entries", n)
			Dropped.WithLabelValues("write_failed").Add(float64(n))
			return
		}
		batch = batch[:0]
	}
}

func (q *Queue) write(ctx context.Context, batch []Entry) error {
	ctx, cancel := context.WithTimeout(ctx, q.opts.Timeout)
	defer cancel()
	if err := q.w.Write(ctx, batch); err != nil {
		return err
	}
	written.Add(float64(len(batch)))
	return nil
}

// clean redacts and normalizes an entry off the hot path.
func (q *Queue) clean(e Entry) Entry { return q.opts.Redactor.Entry(e) }
