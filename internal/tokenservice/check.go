package tokenservice

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// The status codes a decision answers with: HTTP's numbers, named here so
// that the decision imports no HTTP package.
const (
	statusOK              = 200
	statusUnauthorized    = 401
	statusForbidden       = 403
	statusTooManyRequests = 429
)

// verdict is the outcome of validating a presented token.
type verdict struct {
	match   Match
	status  int
	reason  string // metrics label of a refusal
	message string
}

// validate finds a token's app and checks that the token works at now. It
// never puts the token into the message.
func (s *Service) validate(text string, now time.Time) verdict {
	tok, err := token.Parse(text)
	if err != nil {
		return verdict{status: statusUnauthorized, reason: "malformed", message: "the token is malformed: " + err.Error()}
	}
	m, ok := s.Index.Lookup(tok.Digest())
	if !ok {
		return verdict{status: statusUnauthorized, reason: "unknown", message: "the token is unknown or has been revoked"}
	}
	if m.Expired(now) {
		return verdict{match: m, status: statusUnauthorized, reason: "expired", message: fmt.Sprintf(
			"the token expired at %s", m.ExpiresAt().UTC().Format(time.RFC3339))}
	}
	if m.App.Suspended {
		return verdict{match: m, status: statusForbidden, reason: "suspended", message: fmt.Sprintf(
			"app %s/%s is disconnected (spec.suspend is true); its tokens are refused until it is reconnected", m.App.Namespace, m.App.Name)}
	}
	return verdict{match: m, status: statusOK}
}

// checkAnswer is what a check answers: the decision, and what its headers
// and error body say.
type checkAnswer struct {
	decision
	// rate is the rate-limit decision, when the check took from the
	// limits; its five headers go on the answer.
	rate  ratelimit.Decision
	rated bool
	// retryAfter is the 429's Retry-After, in seconds.
	retryAfter int64
	// category and message make an error answer's body.
	category, message string
	// scopes is an allowed check's X-PrivateApp-Scopes: the app's scopes,
	// or those of them the catalogs offer when they offer fewer.
	scopes string
	// routeHeader is X-PrivateApp-Route's value; empty sends none.
	routeHeader string
	// challenge is the WWW-Authenticate header of a refusal (RFC 6750 §3);
	// empty sends none.
	challenge string
}

// noRoute is X-PrivateApp-Route of a call allowed by a catalog's
// unmatchedRequests: Allow.
const noRoute = "-"

// check is external authorization for ingress gateways: it decides, and
// counts refusals; the handler writes the answer.
func (s *Service) check(r *checkRequest, now time.Time) (a checkAnswer) {
	text, ok := bearer(r.authorization)
	if !ok {
		return s.refuseToken(r, nil, "missing", "no Bearer token: send the header Authorization: Bearer <token>")
	}
	v := s.validate(text, now)
	if v.status == statusUnauthorized {
		return s.refuseToken(r, v.match.App, v.reason, v.message)
	}
	app := v.match.App
	if v.status == statusForbidden {
		// A disconnected app is refused before it takes anything from its
		// own or its account's limits: a leaked token of a suspended app
		// must not spend the account's day. The call counts as refused.
		s.Usage.Record(app.Key(), now, false)
		a = refuse(r, app, statusForbidden, v.reason, categoryDisconnected, v.message)
		a.challenge = challengeInvalid
		return a
	}
	dec := s.Limiter.Take(app.key, app.Namespace, s.limitsFor(app.Namespace), now)
	s.Usage.Record(app.Key(), now, dec.Allowed())
	if !dec.Allowed() {
		retry := int64(math.Ceil(dec.RetryAfter.Seconds()))
		which := "the app's limit of %d calls per 10 seconds"
		limit, reason := dec.Limit, "rate_limit_app"
		if dec.Refused == ratelimit.AccountDay {
			which, limit, reason = "the account's limit of %d calls per day (UTC)", dec.DailyLimit, "rate_limit_account"
		}
		a = refuse(r, app, statusTooManyRequests, reason, categoryRateLimits,
			fmt.Sprintf("app %s/%s reached "+which+"; retry after %d s", app.Namespace, app.Name, limit, retry))
		a.rate, a.rated, a.retryAfter = dec, true, retry
		return a
	}
	a.rate, a.rated = dec, true
	cat := s.catalogs()
	var route *catalog.Target
	if cat.Enabled() {
		var refusal, category, msg string
		route, refusal, category, msg = decideRoute(cat, r)
		if refusal != "" {
			refused := refuse(r, app, statusForbidden, refusal, category, msg)
			refused.rate, refused.rated = dec, true
			return refused
		}
	}
	// In path-prefix mode the query is the client's: it never names scopes.
	query := r.query
	if prefixMode(r) {
		query = ""
	}
	if missing := missingScopes(query, app, route, cat); len(missing) > 0 {
		needs := "this call requires"
		if route != nil {
			needs = fmt.Sprintf("route %s (%s) requires", route.ID, route.Template)
		}
		refused := refuse(r, app, statusForbidden, "missing_scope", categoryScopes, fmt.Sprintf(
			"app %s/%s lacks the scopes %s: %s; add them to the app's spec.scopes",
			app.Namespace, app.Name, needs, strings.Join(missing, ", ")))
		refused.route, refused.rate, refused.rated = route, dec, true
		refused.challenge = insufficientScope(missing)
		return refused
	}
	a.decision = decision{code: statusOK, app: app, route: route}
	a.scopes = app.identity[4]
	if cat.Enabled() && !offersAll(cat, app.Scopes) {
		a.scopes = strings.Join(offered(cat, app.Scopes), " ")
	}
	switch {
	case !s.RouteHeader:
	case route != nil:
		a.routeHeader = route.ID
	case cat.Enabled():
		// Overwrites any copy a client sent, for gateways that pass
		// headers through.
		a.routeHeader = noRoute
	}
	return a
}

// refuseToken answers a check whose token does not authenticate: 401.
func (s *Service) refuseToken(r *checkRequest, app *App, reason, message string) checkAnswer {
	a := refuse(r, app, statusUnauthorized, reason, categoryAuthentication, message)
	a.challenge = challengeFor(reason)
	return a
}

// refuse counts a refusal and makes its answer, with the correlation id
// the call log also records.
func refuse(r *checkRequest, app *App, code int, reason, category, message string) checkAnswer {
	refusals.WithLabelValues(reason).Inc()
	return checkAnswer{decision: decision{code: code, app: app, reason: reason, id: callID(r)}, category: category, message: message}
}

// debugCheck logs a check at verbosity 1, with anything that looks like a
// token redacted.
func (s *Service) debugCheck(r *checkRequest, a *checkAnswer) {
	log := s.Log.V(1)
	if !log.Enabled() {
		return
	}
	o, _ := originOf(r)
	app := ""
	if a.app != nil {
		app = a.app.Namespace + "/" + a.app.Name
	}
	log.Info("check", "method", token.Redact(truncate(o.method, 20)), "host", token.Redact(o.host), "path", token.Redact(o.path), "status", a.code,
		"route", a.routeHeader, "app", app)
}

// The Bearer challenges of RFC 6750 §3: a request without a token gets the
// scheme and realm only; one whose token does not work, invalid_token; one
// whose app lacks scopes, insufficient_scope naming them.
const (
	challengeBare    = `Bearer realm="privateapps"`
	challengeInvalid = `Bearer realm="privateapps", error="invalid_token"`
)

// challengeFor is the 401 challenge of a refusal reason.
func challengeFor(reason string) string {
	if reason == "missing" {
		return challengeBare
	}
	return challengeInvalid
}

// insufficientScope is the 403 challenge naming the scopes an app lacks,
// those that RFC 6750's scope syntax can carry (a gateway's ?scope= may
// hold anything).
func insufficientScope(missing []string) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="privateapps", error="insufficient_scope"`)
	sep := `, scope="`
	for _, s := range missing {
		if !scopeToken(s) {
			continue
		}
		b.WriteString(sep)
		b.WriteString(s)
		sep = " "
	}
	if sep == " " {
		b.WriteByte('"')
	}
	return b.String()
}

// scopeToken reports whether s is a scope-token of RFC 6749 §3.3: printable
// ASCII but space, '"' and '\'.
func scopeToken(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// decideRoute finds the catalog route of the request a check is about. It
// returns the route (nil for an unmatched request the catalogs allow), or
// the refusal's metrics reason, error category and message.
func decideRoute(cat *catalog.Set, r *checkRequest) (route *catalog.Target, refusal, category, msg string) {
	o, err := originOf(r)
	if err != nil {
		return nil, "bad_request", categoryValidation, err.Error()
	}
	if o.path == "" {
		return nil, "no_route", categoryNoRoute, "the check does not say which request it is about, so no APICatalog route can be matched: " +
			"nginx sends X-Original-URL and X-Original-Method, ForwardAuth gateways X-Forwarded-Uri, -Method and -Host, " +
			"and Envoy the original path after /v1/check (path_prefix); see docs/token-service.md#gateways"
	}
	if o.host == "" && cat.ByHost() {
		return nil, "no_route", categoryNoRoute, "the check does not say which host the request is for, and APICatalogs route by host: " +
			"send the absolute URL (nginx: X-Original-URL $scheme://$http_host$request_uri; ForwardAuth: X-Forwarded-Host); see docs/token-service.md#gateways"
	}
	if !catalog.KnownMethod(o.method) {
		return nil, "bad_request", categoryValidation, fmt.Sprintf("the method %q is not one a catalog route can name (%s)",
			token.Redact(truncate(o.method, 20)), strings.Join(catalog.Methods, ", "))
	}
	d, err := cat.Decide(o.method, o.host, o.path)
	if err != nil {
		return nil, "bad_path", categoryValidation, token.Redact(err.Error())
	}
	if d.Target != nil || d.AllowUnmatched {
		return d.Target, "", "", ""
	}
	o.path, _ = catalog.CleanPath(o.path)
	msg = "no APICatalog route covers " + describe(o)
	if d.Covering != "" {
		msg += fmt.Sprintf(", and APICatalog %q, which covers it, refuses requests its routes do not match; ask the platform team to add a route", d.Covering)
	} else {
		msg += "; ask the platform team to add a route to an APICatalog"
	}
	return nil, "no_route", categoryNoRoute, msg
}

// missingScopes lists the scopes a call needs that app lacks: those of the
// matched route, and those the gateway's configuration names in the check's
// query. While catalogs exist, a scope no catalog offers is not granted. The
// common query (plain scope=a&scope=b) is read without allocating.
func missingScopes(rawQuery string, app *App, route *catalog.Target, cat *catalog.Set) []string {
	var missing []string
	if route != nil {
		for _, sc := range route.Scopes {
			if !app.HasScope(sc) {
				missing = append(missing, sc)
			}
		}
	}
	grants := func(sc string) bool { return app.HasScope(sc) && (!cat.Enabled() || cat.Offers(sc)) }
	if strings.ContainsAny(rawQuery, "%+;") {
		for _, sc := range requiredScopes(rawQuery) {
			if !grants(sc) {
				missing = append(missing, sc)
			}
		}
		return missing
	}
	for rest := rawQuery; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		if sc, ok := strings.CutPrefix(part, "scope="); ok && !grants(sc) {
			missing = append(missing, sc)
		}
	}
	return missing
}

func offersAll(cat *catalog.Set, scopes []string) bool {
	for _, sc := range scopes {
		if !cat.Offers(sc) {
			return false
		}
	}
	return true
}

// offered is the part of scopes that catalogs in force offer.
func offered(cat *catalog.Set, scopes []string) []string {
	var out []string
	for _, sc := range scopes {
		if cat.Offers(sc) {
			out = append(out, sc)
		}
	}
	return out
}

// requiredScopes returns the values of the scope query parameters. Scopes
// are plain ASCII, so the usual case needs no unescaping and no map.
func requiredScopes(rawQuery string) []string {
	if rawQuery == "" {
		return nil
	}
	if strings.ContainsAny(rawQuery, "%+;") {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			// ParseQuery drops what it cannot read: a scope the gateway's
			// configuration requires must not vanish with it.
			return append(q["scope"], "(the check URL's query does not parse: "+err.Error()+"; fix the gateway's configuration)")
		}
		return q["scope"]
	}
	var out []string
	for part := range strings.SplitSeq(rawQuery, "&") {
		if v, ok := strings.CutPrefix(part, "scope="); ok {
			out = append(out, v)
		}
	}
	return out
}

// bearer takes the token from an Authorization header value.
func bearer(h string) (string, bool) {
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}
