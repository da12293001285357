package tokenservice

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/go-logr/logr"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"golang.org/x/net/http/httpguts"

	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// Engine is the HTTP engine of the token service's listener.
type Engine string

const (
	// EngineFastHTTP serves /v1/check with valyala/fasthttp, whose
	// per-header cost is a fraction of net/http's, and every other path
	// through the net/http Handler (fasthttpadaptor). The default.
	EngineFastHTTP Engine = "fasthttp"
	// EngineNetHTTP serves everything with net/http (HTTP/2 included).
	EngineNetHTTP Engine = "net/http"
)

// ParseEngine reads --token-service-http-engine.
func ParseEngine(s string) (Engine, error) {
	switch e := Engine(s); e {
	case EngineFastHTTP, EngineNetHTTP:
		return e, nil
	}
	return "", fmt.Errorf("--token-service-http-engine is %q; it takes %q or %q", s, EngineFastHTTP, EngineNetHTTP)
}

// FastHandler answers what Handler answers, header for header and byte for
// byte in the body, for the fasthttp engine: /v1/check natively, anything
// else through Handler.
func (s *Server) FastHandler() fasthttp.RequestHandler {
	other := fasthttpadaptor.NewFastHTTPHandler(s.Handler())
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			// net/http survives a handler's panic by closing its connection;
			// fasthttp does not recover, so a panic would end the process.
			if r := recover(); r != nil {
				s.Log.Error(fmt.Errorf("%v", r), "the token service's handler panicked; answered 500", "stack", string(debug.Stack()))
				ctx.Response.Reset()
				writeErrorFast(ctx, http.StatusInternalServerError, categoryValidation, "the token service failed on this request", correlationID())
				ctx.SetConnectionClose()
			}
		}()
		uri := ctx.Request.Header.RequestURI()
		path, query, host, err := splitTarget(uri)
		if err != nil {
			// net/http refuses such a target before any handler.
			writeErrorFast(ctx, http.StatusBadRequest, categoryValidation, "the request target is not a valid URI: "+err.Error(), correlationID())
			return
		}
		if host == "" {
			// The Host header as sent: fasthttp's ctx.Host() is its own
			// reading of it (user info dropped, lower-cased), which would
			// check another host than the one a gateway or upstream reads.
			raw := ctx.Request.Header.Peek(fasthttp.HeaderHost)
			if !httpguts.ValidHostHeader(string(raw)) {
				// net/http refuses it before any handler, too.
				writeErrorFast(ctx, http.StatusBadRequest, categoryValidation, "the Host header is not a valid host", correlationID())
				return
			}
			host = string(raw)
		}
		if path == PathTokenReview && ctx.IsPost() {
			start := time.Now()
			observe(PathTokenReview, s.tokenReviewFast(ctx), start)
			return
		}
		if path != PathCheck && !strings.HasPrefix(path, PathCheck+"/") {
			other(ctx)
			return
		}
		start := time.Now()
		now := s.Clock.Now()
		c := checkRequest{method: methodName(ctx.Method()), host: host, uri: string(uri), path: path, query: query}
		for k, v := range ctx.Request.Header.All() {
			if name := checkHeaderName(k); name != "" {
				c.set(name, string(v))
			}
		}
		a := s.check(&c, now)
		if a.code == http.StatusUnauthorized && s.Introspection.limited() {
			s.meterRefusal(&a, ctx.RemoteIP().String(), now)
		}
		writeCheckFast(ctx, &a)
		observe(PathCheck, a.code, start)
		s.debugCheck(&c, &a)
		s.logCheck(&c, a.decision, now)
	}
}

// tokenReviewFast answers a TokenReview as tokenReview does, without
// making a net/http request of it: kube-apiserver asks one for every
// token it has not cached. It returns the status code.
func (s *Server) tokenReviewFast(ctx *fasthttp.RequestCtx) int {
	if s.TokenReviewNeedsClientCert || s.Introspection.limited() {
		certified := false
		if ctx.IsTLS() {
			st := ctx.TLSConnectionState()
			certified = st != nil && len(st.VerifiedChains) > 0
		}
		switch {
		case certified:
		case s.TokenReviewNeedsClientCert:
			refusals.WithLabelValues("no_client_certificate").Inc()
			writeErrorFast(ctx, http.StatusUnauthorized, categoryAuthentication, noClientCertificate, correlationID())
			return http.StatusUnauthorized
		default:
			source := ctx.RemoteIP().String()
			if !s.Introspection.allow(source, s.Clock.Now()) {
				ctx.Response.Header.Set("Retry-After", "1")
				writeErrorFast(ctx, http.StatusTooManyRequests, categoryRateLimits, s.introspectionRefused(source), correlationID())
				return http.StatusTooManyRequests
			}
		}
	}
	body := ctx.PostBody()
	if len(body) > maxBody {
		body = nil // as the net/http engine's limit reads it
	}
	code, out := s.review(body)
	ctx.SetStatusCode(code)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetBody(out)
	return code
}

// splitTarget reads a request target as net/http does, refusing what it
// refuses (control characters, bad escapes): the decoded path, the raw
// query, and the host an absolute-form target names (net/http's r.Host
// for it). A plain origin-form target is read without url.Parse.
func splitTarget(uri []byte) (path, query, host string, err error) {
	if len(uri) > 0 && uri[0] == '/' && plain(uri) {
		p, q, _ := bytes.Cut(uri, []byte("?"))
		if bytes.IndexByte(p, '%') < 0 {
			return string(p), string(q), "", nil
		}
	}
	u, err := url.ParseRequestURI(string(uri))
	if err != nil {
		// The error quotes the target, which may hold a token.
		return "", "", "", errors.New("it does not parse as a path or an absolute URL")
	}
	return u.Path, u.RawQuery, u.Host, nil
}

// plain reports whether b holds no ASCII control character.
func plain(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
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

// writeCheckFast writes a check's answer with fasthttp: the headers
// writeCheck writes, in the same canonical spelling, named by keys that
// need no normalizing.
func writeCheckFast(ctx *fasthttp.RequestCtx, a *checkAnswer) {
	h := &ctx.Response.Header
	if a.rated {
		setRateHeadersFast(h, a.rate)
	}
	switch a.code {
	case http.StatusOK:
		ident := &a.app.identity
		h.SetCanonical(keyNamespace, s2b(ident[0]))
		h.SetCanonical(keyName, s2b(ident[1]))
		h.SetCanonical(keyAppID, s2b(ident[2]))
		h.SetCanonical(keyUser, s2b(ident[3]))
		if a.scopes != nil {
			h.SetCanonical(keyScopes, s2b(a.scopes[0]))
		} else {
			h.SetCanonical(keyScopes, s2b(ident[4]))
		}
		if a.routeHeader != nil {
			h.SetCanonical(keyRoute, s2b(a.routeHeader[0]))
		}
		return
	case http.StatusTooManyRequests:
		var buf [20]byte
		h.SetBytesV("Retry-After", strconv.AppendInt(buf[:0], a.retryAfter, 10))
	}
	if a.challenge != "" {
		h.Set("WWW-Authenticate", a.challenge)
	}
	writeErrorFast(ctx, a.code, a.category, a.message, a.id)
}

// setRateHeadersFast writes the five rate-limit headers without
// allocating.
func setRateHeadersFast(h *fasthttp.ResponseHeader, d ratelimit.Decision) {
	var buf [20]byte
	h.SetCanonical(keyLimit, strconv.AppendInt(buf[:0], d.Limit, 10))
	h.SetCanonical(keyRemaining, strconv.AppendInt(buf[:0], d.Remaining, 10))
	h.SetCanonical(keyInterval, s2b(intervalMillis))
	h.SetCanonical(keyDaily, strconv.AppendInt(buf[:0], d.DailyLimit, 10))
	h.SetCanonical(keyDailyRemaining, strconv.AppendInt(buf[:0], d.DailyRemaining, 10))
}

// The answer headers' names as fasthttp takes them without normalizing:
// canonical already, as net/http spells them.
var (
	keyLimit          = []byte(hdrLimit)
	keyRemaining      = []byte(hdrRemaining)
	keyInterval       = []byte(hdrInterval)
	keyDaily          = []byte(hdrDaily)
	keyDailyRemaining = []byte(hdrDailyRemaining)
	keyNamespace      = []byte(hdrNamespace)
	keyName           = []byte(hdrName)
	keyAppID          = []byte(hdrAppID)
	keyUser           = []byte(hdrUser)
	keyScopes         = []byte(hdrScopes)
	keyRoute          = []byte(hdrRoute)
)

// s2b is the bytes of s without copying; SetCanonical copies them.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) } //nolint:gosec // G103: SetCanonical copies, never writes

// writeErrorFast writes the JSON error body writeErrorID writes.
func writeErrorFast(ctx *fasthttp.RequestCtx, code int, category, message, id string) {
	ctx.SetStatusCode(code)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetBody(errorJSON(category, message, id))
}

// maxHeaderBytes bounds a request's header section, as net/http's
// MaxHeaderBytes does on the other engine: a gateway's X-Original-URL
// (up to maxOriginalHeader) fits with room to spare.
const maxHeaderBytes = 32 << 10

// NewFastServer is the fasthttp server of the token service, with the
// bounds NewHTTPServer gives the net/http one: 10 s to read a request and
// to write an answer, 90 s idle between keep-alive requests, 32 KiB of
// headers, 16 KiB of body (refused before a handler runs: fasthttp
// allocates a declared body before it arrives, so the bound is what a
// stalled request can make it hold, 48 KiB a connection with the header
// buffer). Buffers of idle connections go back to a pool.
// Answers carry no Server header and no default Content-Type; errors
// before a handler are JSON like every other error; fasthttp's own log
// lines go through the token redactor.
func NewFastServer(h fasthttp.RequestHandler, log logr.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      h,
		ErrorHandler:                 fastRequestError,
		ReadTimeout:                  10 * time.Second,
		WriteTimeout:                 10 * time.Second,
		IdleTimeout:                  90 * time.Second,
		ReadBufferSize:               maxHeaderBytes,
		MaxRequestBodySize:           maxBody,
		ReduceMemoryUsage:            true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		SecureErrorLogMessage:        true,
		CloseOnShutdown:              true,
		Logger:                       fastLogger{log},
	}
}

// fastRequestError answers a request fasthttp could not read.
func fastRequestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		writeErrorFast(ctx, http.StatusRequestHeaderFieldsTooLarge, categoryValidation,
			fmt.Sprintf("the request's headers are over %d bytes", maxHeaderBytes), correlationID())
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeErrorFast(ctx, http.StatusRequestEntityTooLarge, categoryValidation, fmt.Sprintf("the request body is over %d bytes", maxBody), correlationID())
	case errors.As(err, &netErr) && netErr.Timeout():
		writeErrorFast(ctx, http.StatusRequestTimeout, categoryValidation, "the request did not arrive within 10 s", correlationID())
	default:
		writeErrorFast(ctx, http.StatusBadRequest, categoryValidation, "the request is not valid HTTP/1.1", correlationID())
	}
}

// fastLogger takes fasthttp's log lines without their arguments: some
// quote a request's bytes (its headers, credentials of any kind), so only
// the message's form is logged.
type fastLogger struct{ log logr.Logger }

func (l fastLogger) Printf(format string, _ ...any) {
	l.log.V(1).Info("fasthttp: " + token.Redact(format))
}
