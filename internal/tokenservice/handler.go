package tokenservice

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"golang.org/x/net/http/httpguts"

	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// Handler routes the token service's requests on fasthttp. The two a
// client waits on, /v1/check (every request through a gateway) and
// TokenReview (every token kube-apiserver has not cached), are answered
// natively; the others (access-token-info, daily usage, OAuth 2.0
// introspection and metadata, the OpenAPI document, 404s and 405s) by
// net/http handlers through fasthttpadaptor, where an allocation more per
// request costs nothing that matters.
func (s *Service) Handler() fasthttp.RequestHandler {
	other := fasthttpadaptor.NewFastHTTPHandler(s.otherPaths())
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			// fasthttp does not recover a handler's panic, which would end
			// the process.
			if r := recover(); r != nil {
				s.Log.Error(fmt.Errorf("%v", r), "the token service's handler panicked; answered 500", "stack", string(debug.Stack()))
				ctx.Response.Reset()
				writeErrorCtx(ctx, http.StatusInternalServerError, categoryValidation, "the token service failed on this request", correlationID())
				ctx.SetConnectionClose()
			}
		}()
		uri := ctx.Request.Header.RequestURI()
		path, query, host, err := splitTarget(uri)
		if err != nil {
			writeErrorCtx(ctx, http.StatusBadRequest, categoryValidation, "the request target is not a valid URI: "+err.Error(), correlationID())
			return
		}
		if host == "" {
			// The Host header as sent: fasthttp's ctx.Host() is its own
			// reading of it (user info dropped, lower-cased), which would
			// check another host than the one a gateway or upstream reads.
			raw := ctx.Request.Header.Peek(fasthttp.HeaderHost)
			if !httpguts.ValidHostHeader(string(raw)) {
				writeErrorCtx(ctx, http.StatusBadRequest, categoryValidation, "the Host header is not a valid host", correlationID())
				return
			}
			host = string(raw)
		}
		switch {
		case path == PathCheck || strings.HasPrefix(path, PathCheck+"/"):
			// Envoy's path-prefix mode (/v1/check/<original path>) comes
			// here too, before anything could clean the client's path.
			s.serveCheck(ctx, uri, path, query, host)
		case path == PathTokenReview && ctx.IsPost():
			start := time.Now()
			observe(PathTokenReview, s.serveTokenReview(ctx), start)
		default:
			other(ctx)
		}
	}
}

// splitTarget reads a request target strictly, as net/http does, refusing
// control characters and bad escapes: the decoded path, the raw query, and
// the host an absolute-form target names. A plain origin-form target is
// read without url.Parse.
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

// otherPaths routes the paths Handler does not answer natively; anything
// else gets a JSON 404. POST TokenReview never comes here: another method
// is answered 405.
func (s *Service) otherPaths() http.Handler {
	// Exact paths, not a ServeMux: a ServeMux answers paths with // or ..
	// with a redirect, which a gateway would pass on or follow.
	tokenInfo, introspect := onlyPost(s.accessTokenInfo), onlyPost(s.introspect)
	dailyUsage, metadata, openAPI := onlyGet(s.dailyUsage), onlyGet(s.metadata), onlyGet(serveOpenAPI)
	return instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathAccessTokenInfo:
			tokenInfo(w, r)
		case PathTokenReview:
			methodNotAllowed(w, r, http.MethodPost)
		case PathDailyUsage:
			dailyUsage(w, r)
		case PathIntrospect:
			introspect(w, r)
		case PathOAuthMetadata:
			metadata(w, r)
		case PathOpenAPIJSON, PathOpenAPIYAML:
			openAPI(w, r)
		default:
			writeError(w, http.StatusNotFound, categoryNotFound, fmt.Sprintf(
				"no such endpoint %q; the token service answers POST %s, %s, POST %s, GET %s, POST %s and GET %s, described in GET %s",
				token.Redact(truncate(r.URL.Path, 200)), PathAccessTokenInfo, PathCheck, PathTokenReview, PathDailyUsage, PathIntrospect, PathOAuthMetadata, PathOpenAPIJSON))
		}
	}))
}

// onlyGet answers any method but GET and HEAD 405.
func onlyGet(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r, "GET, HEAD")
			return
		}
		h(w, r)
	}
}

// onlyPost answers any method but POST 405.
func onlyPost(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			methodNotAllowed(w, r, http.MethodPost)
			return
		}
		h(w, r)
	}
}

// methodNotAllowed answers 405, naming the methods allowed.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	takes := strings.TrimSuffix(allow, ", HEAD")
	writeError(w, http.StatusMethodNotAllowed, categoryValidation, fmt.Sprintf("%s takes %s, not %s", r.URL.Path, takes, r.Method))
}
