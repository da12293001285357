package tokenservice

import (
	"cmp"
	"fmt"
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

// The request headers a check reads, in canonical form (as fasthttp
// normalizes names); constants, so that a switch over a header name
// compares without allocating.
const (
	hdrAuthorization   = "Authorization"
	hdrRequestID       = "X-Request-Id"
	hdrOriginalURL     = "X-Original-Url"
	hdrOriginalMethod  = "X-Original-Method"
	hdrForwardedURI    = "X-Forwarded-Uri"
	hdrForwardedMethod = "X-Forwarded-Method"
	hdrForwardedHost   = "X-Forwarded-Host"
	// Headers with which some frameworks run another method than the
	// request's.
	hdrHTTPMethodOverride = "X-Http-Method-Override"
	hdrMethodOverride     = "X-Method-Override"
	hdrHTTPMethod         = "X-Http-Method"
)

// checkRequest is what a check reads of the gateway's request.
type checkRequest struct {
	method, host string
	// uri is the request target as sent; path is its path, decoded as
	// url.URL's Path; query is the raw query.
	uri, path, query string
	authorization    string
	requestID        header
	originalURL      header
	originalMethod   header
	forwardedURI     header
	forwardedMethod  header
	forwardedHost    header
	// override is the name of a method-override header the check
	// carries, if any.
	override string
}

// header is a request header a gateway sends once: its first value and
// how many times it came.
type header struct {
	value string
	n     int
}

func (h *header) add(v string) {
	if h.n == 0 {
		h.value = v
	}
	h.n++
}

// set records a header a check reads; any other is ignored.
func (c *checkRequest) set(name, value string) {
	switch name {
	case hdrAuthorization:
		if c.authorization == "" {
			c.authorization = value
		}
	case hdrRequestID:
		c.requestID.add(value)
	case hdrOriginalURL:
		c.originalURL.add(value)
	case hdrOriginalMethod:
		c.originalMethod.add(value)
	case hdrForwardedURI:
		c.forwardedURI.add(value)
	case hdrForwardedMethod:
		c.forwardedMethod.add(value)
	case hdrForwardedHost:
		c.forwardedHost.add(value)
	case hdrHTTPMethodOverride, hdrMethodOverride, hdrHTTPMethod:
		c.override = name
	}
}

// origin is the request a gateway asks the token service to authorize.
type origin struct {
	method, host string
	// path is as the client sent it: percent-encoded, without the query.
	path string
	from string
}

// prefixMode reports whether r is Envoy's path-prefix mode, where the path
// after /v1/check and the query are the client's.
func prefixMode(r *checkRequest) bool { return strings.HasPrefix(r.path, PathCheck+"/") }

// originOf reads the original request from the three places gateways put it,
// in this order of precedence: the path after /v1/check (Envoy and Istio
// ext_authz in path-prefix mode), X-Original-URL with X-Original-Method
// (nginx auth_request, ingress-nginx), X-Forwarded-Uri with
// X-Forwarded-Method and X-Forwarded-Host (Traefik, Caddy and other
// ForwardAuth gateways). When more than one is present they must name the
// same method, path and host: a gateway sets its own and may pass a client's
// copy of another's along, and a client must not be able to choose which one
// is read. A check that names none has an empty path.
func originOf(r *checkRequest) (origin, error) {
	var found [3]origin
	n := 0
	if r.override != "" {
		return origin{}, fmt.Errorf("the check carries %s, which lets an upstream run another method than the one checked; "+
			"have the gateway drop it", r.override)
	}
	if prefixMode(r) {
		// The raw request target: Go's decoded URL.Path (and EscapedPath,
		// which re-encodes it when the raw form has unusual bytes) would
		// turn %2F into a separator.
		raw := r.uri
		if i := strings.Index(raw, "://"); i > 0 && !strings.HasPrefix(raw, "/") {
			raw = raw[i+3:]
			if j := strings.IndexByte(raw, '/'); j >= 0 {
				raw = raw[j:]
			}
		}
		raw, _, _ = strings.Cut(raw, "?")
		p, ok := strings.CutPrefix(raw, PathCheck)
		if !ok || p == "" || p[0] != '/' {
			return origin{}, fmt.Errorf("the check path must be %s followed by the original path, with %s itself not percent-encoded", PathCheck, PathCheck)
		}
		found[n] = origin{method: r.method, host: r.host, path: p, from: fromPathPrefix}
		n++
	}
	u, err := r.originalURL.only(hdrOriginalURL)
	if err != nil {
		return origin{}, err
	}
	if u != "" {
		host, path, err := splitURL(u)
		if err != nil {
			return origin{}, err
		}
		method, err := r.originalMethod.only(hdrOriginalMethod)
		if err != nil {
			return origin{}, err
		}
		found[n] = origin{method: cmp.Or(method, r.method), host: host, path: path, from: fromOriginalURL}
		n++
	}
	if u, err = r.forwardedURI.only(hdrForwardedURI); err != nil {
		return origin{}, err
	}
	if u != "" {
		if len(u) > maxOriginalHeader {
			return origin{}, fmt.Errorf("X-Forwarded-Uri is %d bytes long; the limit is %d", len(u), maxOriginalHeader)
		}
		path, _, _ := strings.Cut(u, "?")
		method, err := r.forwardedMethod.only(hdrForwardedMethod)
		if err != nil {
			return origin{}, err
		}
		host, err := r.forwardedHost.only(hdrForwardedHost)
		if err != nil {
			return origin{}, err
		}
		found[n] = origin{method: cmp.Or(method, r.method), host: host, path: path, from: fromForwardedURI}
		n++
	}
	if n == 0 {
		return origin{}, nil
	}
	for i := range found[:n] {
		host, err := hostname(found[i].host)
		if err != nil {
			return origin{}, fmt.Errorf("%s: %w", found[i].from, err)
		}
		found[i].host = host
	}
	o := found[0]
	for _, other := range found[1:n] {
		if !sameRequest(o, other) {
			return origin{}, fmt.Errorf("%s says %s and %s says %s: when a gateway sends several of these they must agree; "+
				"configure the gateway to set (or drop) the headers a client sends, see docs/token-service.md#gateways",
				o.from, describe(o), other.from, describe(other))
		}
		// A copy without a host (a relative X-Original-URL) does not take
		// the host another family names: the gateway set one family, and
		// the other may be a client's copy it passed along.
	}
	return o, nil
}

// only returns the value of a header a gateway sends once; a second value
// (the gateway's and a client's) is an error.
func (h header) only(name string) (string, error) {
	if h.n > 1 {
		return "", fmt.Errorf("the check carries %s %d times; a gateway sends it once", name, h.n)
	}
	return h.value, nil
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
		// The authority ends at the first /: nginx's $http_host may hold
		// ?, # or @ from a client's Host header, and reading past them
		// would check another host or path than the one served. hostname
		// refuses such a host.
		rest = u[i+3:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		host = rest[:end]
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
	return a.host == "" || b.host == "" || strings.EqualFold(a.host, b.host)
}

// hostname reads a Host value strictly: a DNS name or IPv4 address with an
// optional port, or a bracketed IPv6 address. It returns the name without
// the port; anything else is an error, since gateways and upstreams read
// odd Host values differently.
func hostname(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	name, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", fmt.Errorf("the host %q is malformed", token.Redact(truncate(h, 100)))
		}
		name, port = h[1:end], h[end+1:]
		if port != "" && port[0] != ':' {
			return "", fmt.Errorf("the host %q is malformed", token.Redact(truncate(h, 100)))
		}
		port = strings.TrimPrefix(port, ":")
		for _, c := range name {
			if !(c == ':' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return "", fmt.Errorf("the host %q is malformed", token.Redact(truncate(h, 100)))
			}
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i+1:]
	}
	badName := false
	if !strings.HasPrefix(h, "[") {
		for i := 0; i < len(name); i++ {
			if c := name[i]; !(c == '.' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				badName = true
			}
		}
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			badName = true
		}
	}
	if len(port) > 5 || badName || name == "" || len(name) > 253 {
		return "", fmt.Errorf("the host %q is not a host name with an optional port; the gateway must send the request's host as it served it", token.Redact(truncate(h, 100)))
	}
	return strings.TrimSuffix(name, "."), nil
}

// describe renders a request for a message, with anything that looks like
// a token redacted.
func describe(o origin) string {
	o.method = truncate(o.method, 20)
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
