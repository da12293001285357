package tokenservice

import (
	"net/http"
	"strconv"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

// The hot path of /v1/check over HTTP: reading the gateway's request and
// writing the answer's headers without allocating more than the decision
// itself does. TestCheckAnswerHeaders and TestCheckAllocations guard it.

// Identity headers on an allowed /v1/check answer, for the upstream.
const (
	HeaderNamespace = "X-PrivateApp-Namespace"
	HeaderName      = "X-PrivateApp-Name"
	HeaderAppID     = "X-PrivateApp-Id"
	HeaderUser      = "X-PrivateApp-User"
	HeaderScopes    = "X-PrivateApp-Scopes"
	// HeaderRoute names the APICatalog route a check matched, as
	// "catalog/route".
	HeaderRoute = "X-PrivateApp-Route"
)

// The answer headers' names in canonical form (X-Privateapp-Namespace, as
// Go's HTTP clients spell them), which fasthttp takes without normalizing.
var (
	keyLimit          = canonical("X-RateLimit-Limit")
	keyRemaining      = canonical("X-RateLimit-Remaining")
	keyInterval       = canonical("X-RateLimit-Interval-Milliseconds")
	keyDaily          = canonical("X-RateLimit-Daily")
	keyDailyRemaining = canonical("X-RateLimit-Daily-Remaining")
	keyNamespace      = canonical(HeaderNamespace)
	keyName           = canonical(HeaderName)
	keyAppID          = canonical(HeaderAppID)
	keyUser           = canonical(HeaderUser)
	keyScopes         = canonical(HeaderScopes)
	keyRoute          = canonical(HeaderRoute)
	intervalMillis    = strconv.AppendInt(nil, ratelimit.Window.Milliseconds(), 10)
)

func canonical(name string) []byte { return []byte(http.CanonicalHeaderKey(name)) }

// serveCheck answers a check: it reads what the check reads of the
// request, decides, and writes the answer; uri is the target as sent,
// path, query and host what Handler read of it.
func (s *Service) serveCheck(ctx *fasthttp.RequestCtx, uri []byte, path, query, host string) {
	start := time.Now()
	now := s.Clock.Now()
	c := readCheck(ctx, uri, path, query, host)
	a := s.check(&c, now)
	if a.code == statusUnauthorized && s.Introspection.limited() {
		s.meterRefusal(&a, ctx.RemoteIP().String(), now)
	}
	writeCheck(ctx, &a)
	observe(PathCheck, a.code, start)
	s.debugCheck(&c, &a)
	s.logCheck(&c, a.decision, now)
}

// readCheck is what a check reads of the request: the method, the target
// as Handler read it, and the headers of checkHeaderName.
func readCheck(ctx *fasthttp.RequestCtx, uri []byte, path, query, host string) checkRequest {
	c := checkRequest{method: methodName(ctx.Method()), host: host, uri: string(uri), path: path, query: query}
	for k, v := range ctx.Request.Header.All() {
		if name := checkHeaderName(k); name != "" {
			c.set(name, string(v))
		}
	}
	return c
}

// checkHeaderName is the name of a header a check reads, or "": a switch
// over the bytes, which compares without allocating.
func checkHeaderName(k []byte) string {
	switch string(k) {
	case hdrAuthorization:
		return hdrAuthorization
	case hdrRequestID:
		return hdrRequestID
	case hdrOriginalURL:
		return hdrOriginalURL
	case hdrOriginalMethod:
		return hdrOriginalMethod
	case hdrForwardedURI:
		return hdrForwardedURI
	case hdrForwardedMethod:
		return hdrForwardedMethod
	case hdrForwardedHost:
		return hdrForwardedHost
	case hdrHTTPMethodOverride:
		return hdrHTTPMethodOverride
	case hdrMethodOverride:
		return hdrMethodOverride
	case hdrHTTPMethod:
		return hdrHTTPMethod
	}
	return ""
}

// methodName returns the common methods without allocating.
func methodName(m []byte) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPost:
		return http.MethodPost
	case http.MethodHead:
		return http.MethodHead
	}
	return string(m)
}

// writeCheck writes a check's answer: an allowed check's headers, or a
// refusal's headers and JSON error body.
func writeCheck(ctx *fasthttp.RequestCtx, a *checkAnswer) {
	h := &ctx.Response.Header
	if a.rated {
		setRateHeaders(h, a.rate)
	}
	switch a.code {
	case statusOK:
		ident := &a.app.identity
		h.SetCanonical(keyNamespace, s2b(ident[0]))
		h.SetCanonical(keyName, s2b(ident[1]))
		h.SetCanonical(keyAppID, s2b(ident[2]))
		h.SetCanonical(keyUser, s2b(ident[3]))
		h.SetCanonical(keyScopes, s2b(a.scopes))
		if a.routeHeader != "" {
			h.SetCanonical(keyRoute, s2b(a.routeHeader))
		}
		return
	case statusTooManyRequests:
		var buf [20]byte
		h.SetBytesV("Retry-After", strconv.AppendInt(buf[:0], a.retryAfter, 10))
	}
	if a.challenge != "" {
		h.Set("WWW-Authenticate", a.challenge)
	}
	writeErrorCtx(ctx, a.code, a.category, a.message, a.id)
}

// setRateHeaders writes the five rate-limit headers without allocating.
func setRateHeaders(h *fasthttp.ResponseHeader, d ratelimit.Decision) {
	var buf [20]byte
	h.SetCanonical(keyLimit, strconv.AppendInt(buf[:0], d.Limit, 10))
	h.SetCanonical(keyRemaining, strconv.AppendInt(buf[:0], d.Remaining, 10))
	h.SetCanonical(keyInterval, intervalMillis)
	h.SetCanonical(keyDaily, strconv.AppendInt(buf[:0], d.DailyLimit, 10))
	h.SetCanonical(keyDailyRemaining, strconv.AppendInt(buf[:0], d.DailyRemaining, 10))
}

// s2b is the bytes of s without copying; SetCanonical copies them.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) } //nolint:gosec // G103: SetCanonical copies, never writes
