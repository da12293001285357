package tokenservice

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// maxIntrospectionSources bounds the per-source counters of one second:
// past it, new sources share one counter, so a flood from many addresses
// costs memory no more than a flood from one.
const maxIntrospectionSources = 65536

// IntrospectionLimit counts the access-token-info calls and TokenReviews
// of each source address per second, so that whoever reaches the token
// service cannot use it as an unmetered oracle to test tokens. A
// TokenReview from a caller authenticated by client certificate
// (kube-apiserver) is not counted.
type IntrospectionLimit struct {
	// PerSecond is how many calls one source may make each second; zero
	// is no limit.
	PerSecond int

	mu     sync.Mutex
	second int64
	counts map[string]int
}

// allow counts a call of source at now, and says whether it is within the
// limit.
func (l *IntrospectionLimit) allow(source string, now time.Time) bool {
	if l == nil || l.PerSecond <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second || l.counts == nil {
		l.second, l.counts = s, make(map[string]int)
	}
	if _, ok := l.counts[source]; !ok && len(l.counts) >= maxIntrospectionSources {
		source = "*"
	}
	l.counts[source]++
	return l.counts[source] <= l.PerSecond
}

// sourceOf is the client's address without its port: the peer of the
// connection, never a header a client could set.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// introspectionAllowed applies the limit to r, answering 429 when it is
// spent.
func (s *Service) introspectionAllowed(w http.ResponseWriter, r *http.Request) bool {
	if s.Introspection.allow(sourceOf(r), s.Clock.Now()) {
		return true
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, categoryRateLimits, s.introspectionRefused(sourceOf(r)))
	return false
}

// meterRefusal takes a check whose token did not authenticate from its
// source's introspection budget. Past it, the answer is still 401 (what a
// gateway passes on) but says only that the token was not accepted: which
// tokens exist, whose they are and when they expired is what the limit
// protects, and /v1/check must not tell it for free. The call log keeps the
// reason, for the app's admins.
func (s *Service) meterRefusal(a *checkAnswer, source string, now time.Time) {
	if s.Introspection.allow(source, now) {
		return
	}
	refusals.WithLabelValues("rate_limit_introspection").Inc()
	a.message = withheld
}

// withheld is a refused token's message past the introspection limit.
var withheld = "the token is not accepted (more failed checks per second from this address than --introspection-rate-limit allows: details withheld)"

// introspectionRefused counts a call over the limit and says why it is
// refused.
func (s *Service) introspectionRefused(source string) string {
	refusals.WithLabelValues("rate_limit_introspection").Inc()
	return "more than " + strconv.Itoa(s.Introspection.PerSecond) +
		" token introspection calls per second from " + source + " (--introspection-rate-limit); retry after a second"
}

// limited reports whether l limits anything.
func (l *IntrospectionLimit) limited() bool { return l != nil && l.PerSecond > 0 }
