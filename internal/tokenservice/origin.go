package tokenservice

import (
	"cmp"
	"fmt"
	"net/http"
	"strings"

	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// Where a gateway puts the request it asks about.
const (
	fromPathPrefix    = "the path after /v1/check (path-prefix mode)"
	fromOriginalURL   = "X-Original-URL"
	fromForwardedURI  = "X-Forwarded-Uri"
	maxOriginalHeader = catalog.MaxPathLength + 1024
)

var (
	hdrOriginalURL     = http.CanonicalHeaderKey("X-Original-URL")
	hdrOriginalMethod  = http.CanonicalHeaderKey("X-Original-Method")
	hdrForwardedURI    = http.CanonicalHeaderKey("X-Forwarded-Uri")
	hdrForwardedMethod = http.CanonicalHeaderKey("X-Forwarded-Method")
	hdrForwardedHost   = http.CanonicalHeaderKey("X-Forwarded-Host")
)

// origin is the request a gateway asks the token service to authorize.
type origin struct {
	method, host string
	// path is as the client sent it: percent-encoded, without the query.
	path string
	from string
}

// prefixMode reports whether r is Envoy's path-prefix mode, where the path
// after /v1/check and the query are the client's.
func prefixMode(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, PathCheck+"/") }

// originOf reads the original request from the three places gateways put it,
// in this order of precedence: the path after /v1/check (Envoy and Istio
// ext_authz in path-prefix mode), X-Original-URL with X-Original-Method
// (nginx auth_request, ingress-nginx), X-Forwarded-Uri with
// X-Forwarded-Method and X-Forwarded-Host (Traefik, Caddy and other
// ForwardAuth gateways). When more than one is present they must name the
// same method, path and host: a gateway sets its own and may pass a client's
// copy of another's along, and a client must not be able to choose which one
// is read. A check that names none has an empty path.
func originOf(r *http.Request) (origin, error) {
	var found [3]origin
	n := 0
	h := r.Header
	if prefixMode(r) {
		raw := r.URL.EscapedPath()
		p, ok := strings.CutPrefix(raw, PathCheck)
		if !ok || p == "" || p[0] != '/' {
			return origin{}, fmt.Errorf("the check path must be %s followed by the original path, with %s itself not percent-encoded", PathCheck, PathCheck)
		}
		found[n] = origin{method: r.Method, host: r.Host, path: p, from: fromPathPrefix}
		n++
	}
	if u := first(h, hdrOriginalURL); u != "" {
		host, path, err := splitURL(u)
		if err != nil {
			return origin{}, err
		}
		found[n] = origin{method: cmp.Or(first(h, hdrOriginalMethod), r.Method), host: host, path: path, from: fromOriginalURL}
		n++
	}
	if u := first(h, hdrForwardedURI); u != "" {
		if len(u) > maxOriginalHeader {
			return origin{}, fmt.Errorf("X-Forwarded-Uri is %d bytes long; the limit is %d", len(u), maxOriginalHeader)
		}
		path, _, _ := strings.Cut(u, "?")
		found[n] = origin{method: cmp.Or(first(h, hdrForwardedMethod), r.Method), host: first(h, hdrForwardedHost), path: path, from: fromForwardedURI}
		n++
	}
	if n == 0 {
		return origin{}, nil
	}
	o := found[0]
	for _, other := range found[1:n] {
		if !sameRequest(o, other) {
			return origin{}, fmt.Errorf("%s says %s and %s says %s: when a gateway sends several of these they must agree; "+
				"configure the gateway to set (or drop) the headers a client sends, see docs/token-service.md#gateways",
				o.from, describe(o), other.from, describe(other))
		}
	}
	return o, nil
}

func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// splitURL takes the host and the path from an X-Original-URL value: an
// absolute URL (scheme://host/path?query) or a path (/path?query).
func splitURL(u string) (host, path string, err error) {
	if len(u) > maxOriginalHeader {
		return "", "", fmt.Errorf("X-Original-URL is %d bytes long; the limit is %d", len(u), maxOriginalHeader)
	}
	rest := u
	if !strings.HasPrefix(u, "/") {
		i := strings.Index(u, "://")
		if i <= 0 {
			return "", "", fmt.Errorf("X-Original-URL %q is neither an absolute URL nor a path; nginx sends $scheme://$http_host$request_uri", token.Redact(truncate(u, 200)))
		}
		rest = u[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		host = rest[:end]
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			host = host[at+1:]
		}
		rest = rest[end:]
	}
	if end := strings.IndexAny(rest, "?#"); end >= 0 {
		rest = rest[:end]
	}
	if rest == "" {
		rest = "/"
	}
	return host, rest, nil
}

// sameRequest compares two readings of the original request: methods,
// cleaned paths, and hosts where both name one.
func sameRequest(a, b origin) bool {
	if a.method != b.method {
		return false
	}
	pa, errA := catalog.CleanPath(a.path)
	pb, errB := catalog.CleanPath(b.path)
	if errA != nil || errB != nil {
		pa, pb = a.path, b.path
	}
	if pa != pb {
		return false
	}
	ha, hb := hostname(a.host), hostname(b.host)
	return ha == "" || hb == "" || strings.EqualFold(ha, hb)
}

func hostname(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		return h[:i]
	}
	return h
}

// describe renders a request for a message, with anything that looks like
// a token redacted.
func describe(o origin) string {
	s := o.method + " " + o.path
	if o.host != "" {
		s += " on host " + o.host
	}
	return token.Redact(truncate(s, 300))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
