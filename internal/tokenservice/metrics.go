package tokenservice

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "privateapps_token_requests_total",
		Help: "Requests to the token service, by path and HTTP status code.",
	}, []string{"path", "code"})
	refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "privateapps_token_refusals_total",
		Help: "Calls refused, by reason: missing, malformed, unknown, expired, suspended, missing_scope, no_route, bad_path, bad_request, rate_limit_app, rate_limit_account, audience (a TokenReview for an audience app tokens are not valid for), rate_limit_introspection, no_client_certificate.",
	}, []string{"reason"})
	sharedLimiterUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "privateapps_ratelimit_shared_up",
		Help: "1 while the shared (Redis) rate-limit counters answer, 0 while this replica decides on its own counters (each replica then allows what was left of each account's day at the last answer, and its own 10-second windows).",
	})
	sharedLimiterErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "privateapps_ratelimit_shared_errors_total",
		Help: "Calls decided by the replica's own counters because the shared (Redis) counters did not answer.",
	})
	latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "privateapps_token_request_duration_seconds",
		Help:    "Time to answer a token service request, by path.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1},
	}, []string{"path"})
)

type metricKey struct {
	path string
	code int
}

// known holds the series of the common answers, resolved once: looking
// labels up costs more than the rest of a check.
var known = map[metricKey]struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}{}

func init() {
	metrics.Registry.MustRegister(requests, refusals, latency, sharedLimiterErrors, sharedLimiterUp, connectionsRefused, connectionsShed)
	for _, path := range []string{PathCheck, PathAccessTokenInfo, PathTokenReview} {
		for _, code := range []int{200, 401, 403, 429} {
			known[metricKey{path, code}] = struct {
				requests prometheus.Counter
				latency  prometheus.Observer
			}{requests.WithLabelValues(path, strconv.Itoa(code)), latency.WithLabelValues(path)}
		}
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// instrument counts the requests of the paths served through the adaptor
// and times them, labelled by the known path. /v1/check and TokenReview do
// not come through here (Handler observes them).
func instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		path := "other"
		switch r.URL.Path {
		case PathAccessTokenInfo, PathTokenReview, PathIntrospect, PathOAuthMetadata:
			path = r.URL.Path
		}
		observe(path, rec.code, start)
	})
}

// observe counts one answer and its latency.
func observe(path string, code int, start time.Time) {
	if m, ok := known[metricKey{path, code}]; ok {
		m.requests.Inc()
		m.latency.Observe(time.Since(start).Seconds())
		return
	}
	requests.WithLabelValues(path, strconv.Itoa(code)).Inc()
	latency.WithLabelValues(path).Observe(time.Since(start).Seconds())
}

// SharedLimiterAnswered is the OnSuccess hook of a shared limiter.
func SharedLimiterAnswered() { sharedLimiterUp.Set(1) }

// SharedLimiterErrors returns the OnError hook of a shared limiter: it
// counts each fallback to the replica's own counters and logs at most one
// line per interval, so a Redis outage does not flood the log.
func SharedLimiterErrors(log logr.Logger, interval time.Duration) func(error) {
	var mu sync.Mutex
	var last time.Time
	var missed int
	return func(err error) {
		sharedLimiterErrors.Inc()
		sharedLimiterUp.Set(0)
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); now.Sub(last) >= interval {
			log.Error(err, "shared rate-limit counters unreachable; this replica counts on its own until they answer",
				"fallbacksSinceLastLine", missed)
			last, missed = now, 0
			return
		}
		missed++
	}
}
