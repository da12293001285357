package tokenservice

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// Paths the token service answers.
const (
	PathAccessTokenInfo = "/oauth/v2/private-apps/get/access-token-info" //nolint:gosec // G101: a path, not a credential
	PathCheck           = "/v1/check"
	PathTokenReview     = "/apis/authentication.k8s.io/v1/tokenreviews"
)

// maxBody bounds request bodies; a token-info request is tens of bytes and a
// TokenReview well under this.
const maxBody = 16 << 10

// Error categories of the JSON error body.
const (
	categoryAuthentication = "INVALID_AUTHENTICATION"
	categoryScopes         = "MISSING_SCOPES"
	categoryDisconnected   = "APP_DISCONNECTED"
	categoryRateLimits     = "RATE_LIMITS"
	categoryValidation     = "VALIDATION_ERROR"
	categoryNotFound       = "OBJECT_NOT_FOUND"
	categoryNoRoute        = "NO_ROUTE"
)

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

// Catalogs gives the API catalogs in force.
type Catalogs interface {
	Current() *catalog.Set
}

// AccountLabels tells the edition and API add-on of a namespace.
type AccountLabels interface {
	Labels(namespace string) (edition string, apiLimitIncrease bool)
}

// Server answers the three interfaces of the token service.
type Server struct {
	Index    *Index
	Limiter  ratelimit.Taker
	Limits   LimitsConfig
	Accounts AccountLabels
	Usage    *Usage
	// Catalogs decide which scopes each call needs; nil is no catalog.
	Catalogs Catalogs
	// Calls takes every decision on an app's call for the call log; nil
	// keeps no log.
	Calls CallLog
	// RouteHeader adds X-PrivateApp-Route to allowed checks while catalogs
	// exist. Off by default: each answer header costs net/http about 3% of
	// the check's throughput.
	RouteHeader bool
	// Audiences are the audiences a TokenReview may authenticate app
	// tokens for. Empty is audience-unaware, as kube-apiserver expects of
	// a token webhook: the answer names no audience, so kube-apiserver
	// accepts it for its own audiences only, and a TokenReview that asks
	// for others is refused.
	Audiences []string
	// TokenReviewNeedsClientCert refuses TokenReviews from callers that
	// did not present a client certificate the listener verified
	// (--token-review-client-ca).
	TokenReviewNeedsClientCert bool
	// OAuthClients are the resource servers that may introspect tokens
	// (POST /oauth2/introspect); nil is none.
	OAuthClients *IntrospectionClients
	// Issuer is the issuer URL of the OAuth 2.0 metadata and introspection
	// answers; empty derives it from the request's Host.
	Issuer string
	// Introspection limits access-token-info calls and TokenReviews per
	// source; nil is no limit.
	Introspection *IntrospectionLimit
	Clock         clock.PassiveClock
	Log           logr.Logger
}

func (s *Server) catalogs() *catalog.Set {
	if s.Catalogs == nil {
		return catalog.Empty
	}
	return s.Catalogs.Current()
}

// Handler routes the token service's paths; anything else gets a JSON 404.
func (s *Server) Handler() http.Handler {
	// Exact paths, not a ServeMux: a ServeMux answers paths with // or ..
	// with a redirect, which a gateway would pass on or follow.
	tokenInfo, tokenReview, introspect := s.onlyPost(s.accessTokenInfo), s.onlyPost(s.tokenReview), s.onlyPost(s.introspect)
	dailyUsage, metadata, openAPI := onlyGet(s.dailyUsage), onlyGet(s.metadata), onlyGet(serveOpenAPI)
	other := instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathAccessTokenInfo:
			tokenInfo(w, r)
		case PathTokenReview:
			tokenReview(w, r)
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
	// /v1/check is on every request's path through a gateway: it skips the
	// router and the status-recording wrapper, and reports its own status.
	// Envoy's path-prefix mode (/v1/check/<original path>) comes here too,
	// before the router could clean the client's path or redirect it.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PathCheck && !strings.HasPrefix(r.URL.Path, PathCheck+"/") {
			other.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		now := s.Clock.Now()
		c := checkRequestOf(r)
		a := s.check(&c, now)
		if a.code == http.StatusUnauthorized && s.Introspection.limited() {
			s.meterRefusal(&a, sourceOf(r), now)
		}
		writeCheck(w, &a)
		observe(PathCheck, a.code, start)
		s.debugCheck(&c, &a)
		s.logCheck(&c, a.decision, now)
	})
}

// onlyGet answers any method but GET and HEAD 405.
func onlyGet(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, categoryValidation, fmt.Sprintf("%s takes GET, not %s", r.URL.Path, r.Method))
			return
		}
		h(w, r)
	}
}

func (s *Server) onlyPost(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, categoryValidation, fmt.Sprintf("%s takes POST, not %s", r.URL.Path, r.Method))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r)
	}
}

// verdict is the outcome of validating a presented token.
type verdict struct {
	match   Match
	status  int
	reason  string // metrics label of a refusal
	message string
}

// validate finds a token's app and checks that the token works at now. It
// never puts the token into the message.
func (s *Server) validate(text string, now time.Time) verdict {
	tok, err := token.Parse(text)
	if err != nil {
		return verdict{status: http.StatusUnauthorized, reason: "malformed", message: "the token is malformed: " + err.Error()}
	}
	m, ok := s.Index.Lookup(tok.Digest())
	if !ok {
		return verdict{status: http.StatusUnauthorized, reason: "unknown", message: "the token is unknown or has been revoked"}
	}
	if m.Expired(now) {
		return verdict{match: m, status: http.StatusUnauthorized, reason: "expired", message: fmt.Sprintf(
			"the token expired at %s", m.ExpiresAt().UTC().Format(time.RFC3339))}
	}
	if m.App.Suspended {
		return verdict{match: m, status: http.StatusForbidden, reason: "suspended", message: fmt.Sprintf(
			"app %s/%s is disconnected (spec.suspend is true); its tokens are refused until it is reconnected", m.App.Namespace, m.App.Name)}
	}
	return verdict{match: m, status: http.StatusOK}
}

func (s *Server) limitsFor(ns string) ratelimit.Limits {
	edition, addOn := "", false
	if s.Accounts != nil {
		edition, addOn = s.Accounts.Labels(ns)
	}
	return s.Limits.For(edition, addOn)
}

// checkAnswer is what a check answers, written by either HTTP engine:
// the decision, and what its headers and error body say.
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
	// scopes is X-PrivateApp-Scopes when catalogs offer fewer scopes than
	// the app holds; otherwise the app's own value is sent.
	scopes []string
	// routeHeader is X-PrivateApp-Route's value; nil sends none.
	routeHeader []string
	// challenge is the WWW-Authenticate header of a refusal (RFC 6750 §3);
	// empty sends none.
	challenge string
}

// check is external authorization for ingress gateways: it decides, and
// counts refusals; the engine's handler writes the answer.
func (s *Server) check(r *checkRequest, now time.Time) (a checkAnswer) {
	text, ok := bearer(r.authorization)
	if !ok {
		return s.refuseToken(r, nil, "missing", "no Bearer token: send the header Authorization: Bearer <token>")
	}
	v := s.validate(text, now)
	if v.status == http.StatusUnauthorized {
		return s.refuseToken(r, v.match.App, v.reason, v.message)
	}
	app := v.match.App
	if v.status == http.StatusForbidden {
		// A disconnected app is refused before it takes anything from its
		// own or its account's limits: a leaked token of a suspended app
		// must not spend the account's day. The call counts as refused.
		s.Usage.Record(app.Key(), now, false)
		a = refuse(r, app, http.StatusForbidden, v.reason, categoryDisconnected, v.message)
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
		a = refuse(r, app, http.StatusTooManyRequests, reason, categoryRateLimits,
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
			refused := refuse(r, app, http.StatusForbidden, refusal, category, msg)
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
		refused := refuse(r, app, http.StatusForbidden, "missing_scope", categoryScopes, fmt.Sprintf(
			"app %s/%s lacks the scopes %s: %s; add them to the app's spec.scopes",
			app.Namespace, app.Name, needs, strings.Join(missing, ", ")))
		refused.route, refused.rate, refused.rated = route, dec, true
		refused.challenge = insufficientScope(missing)
		return refused
	}
	a.decision = decision{code: http.StatusOK, app: app, route: route}
	if cat.Enabled() && !offersAll(cat, app.Scopes) {
		a.scopes = []string{strings.Join(offered(cat, app.Scopes), " ")}
	}
	switch {
	case !s.RouteHeader:
	case route != nil:
		a.routeHeader = route.IDValue
	case cat.Enabled():
		// Overwrites any copy a client sent, for gateways that pass
		// headers through.
		a.routeHeader = noRoute
	}
	return a
}

// refuseToken answers a check whose token does not authenticate: 401.
func (s *Server) refuseToken(r *checkRequest, app *App, reason, message string) checkAnswer {
	a := refuse(r, app, http.StatusUnauthorized, reason, categoryAuthentication, message)
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
func (s *Server) debugCheck(r *checkRequest, a *checkAnswer) {
	log := s.Log.V(1)
	if !log.Enabled() {
		return
	}
	o, _ := originOf(r)
	app, route := "", ""
	if a.app != nil {
		app = a.app.Namespace + "/" + a.app.Name
	}
	if len(a.routeHeader) > 0 {
		route = a.routeHeader[0]
	}
	log.Info("check", "method", token.Redact(truncate(o.method, 20)), "host", token.Redact(o.host), "path", token.Redact(o.path), "status", a.code,
		"route", route, "app", app)
}

// writeCheck writes a check's answer with net/http.
func writeCheck(w http.ResponseWriter, a *checkAnswer) {
	h := w.Header()
	if a.rated {
		setRateHeaders(h, a.rate)
	}
	switch a.code {
	case http.StatusOK:
		// The values are the app's, built once per status change; their
		// capacity is capped, so nothing can append into them.
		ident := &a.app.identity
		h[hdrNamespace], h[hdrName], h[hdrAppID], h[hdrUser], h[hdrScopes] = ident[0:1:1], ident[1:2:2], ident[2:3:3], ident[3:4:4], ident[4:5:5]
		if a.scopes != nil {
			h[hdrScopes] = a.scopes
		}
		if a.routeHeader != nil {
			h[hdrRoute] = a.routeHeader
		}
		w.WriteHeader(http.StatusOK)
		return
	case http.StatusTooManyRequests:
		h.Set("Retry-After", strconv.FormatInt(a.retryAfter, 10))
	}
	if a.challenge != "" {
		h.Set("WWW-Authenticate", a.challenge)
	}
	writeErrorID(w, a.code, a.category, a.message, a.id)
}

// unauthorized answers a request whose token does not authenticate.
func unauthorized(w http.ResponseWriter, reason, message string) {
	refusals.WithLabelValues(reason).Inc()
	w.Header().Set("WWW-Authenticate", challengeFor(reason))
	writeError(w, http.StatusUnauthorized, categoryAuthentication, message)
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

type tokenInfoRequest struct {
	TokenKey string `json:"tokenKey"`
}

// TokenInfo is the answer of the access-token-info endpoint, in HubSpot's
// shape: userId, hubId and appId are numbers (internal/hubid), absent until
// the controller has given them; the names are the project's own fields.
type TokenInfo struct {
	UserID    int64    `json:"userId,omitempty"`
	HubID     int64    `json:"hubId,omitempty"`
	AppID     int64    `json:"appId,omitempty"`
	Scopes    []string `json:"scopes"`
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	// UID is the PrivateApp's UID; InstalledBy the user in its status.
	UID         string `json:"uid"`
	InstalledBy string `json:"installedBy,omitempty"`
	TokenType   string `json:"tokenType"`
	ExpiresAt   string `json:"expiresAt,omitempty"`
	// Previous is true for a token kept valid by a grace period.
	Previous bool `json:"previous,omitempty"`
}

func (s *Server) accessTokenInfo(w http.ResponseWriter, r *http.Request) {
	if !s.introspectionAllowed(w, r) {
		return
	}
	var req tokenInfoRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, categoryValidation, fmt.Sprintf("the request body is over %d bytes", maxBody))
			return
		}
		writeError(w, http.StatusBadRequest, categoryValidation, `the body must be JSON of the form {"tokenKey": "<token>"}`)
		return
	}
	if req.TokenKey == "" {
		writeError(w, http.StatusBadRequest, categoryValidation, `tokenKey is required: send {"tokenKey": "<token>"}`)
		return
	}
	v := s.validate(req.TokenKey, s.Clock.Now())
	if v.status != http.StatusOK {
		refusals.WithLabelValues(v.reason).Inc()
		category := categoryAuthentication
		if v.status == http.StatusForbidden {
			category = categoryDisconnected
		}
		writeError(w, v.status, category, v.message)
		return
	}
	app := v.match.App
	info := TokenInfo{
		UserID: app.UserID, HubID: app.HubID, AppID: app.AppID, Scopes: app.Scopes,
		Namespace: app.Namespace, Name: app.Name, UID: app.UID, InstalledBy: app.InstalledBy, TokenType: "private-app", Previous: v.match.Previous,
	}
	if exp := v.match.ExpiresAt(); exp != nil {
		info.ExpiresAt = exp.UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, info)
}

// tokenReview is Kubernetes webhook token authentication. An
// authentication counts as a call of the app, and past the app's or the
// account's limit the answer is "not authenticated", with the reason.
func (s *Server) tokenReview(w http.ResponseWriter, r *http.Request) {
	if !clientAuthenticated(r) {
		if s.TokenReviewNeedsClientCert {
			refusals.WithLabelValues("no_client_certificate").Inc()
			writeError(w, http.StatusUnauthorized, categoryAuthentication, noClientCertificate)
			return
		}
		if !s.introspectionAllowed(w, r) {
			return
		}
	}
	body, err := io.ReadAll(r.Body) // at most maxBody: onlyPost limits it
	if err != nil {
		body = nil
	}
	code, out := s.review(body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(out)
}

const noClientCertificate = "TokenReview needs a client certificate signed by " +
	"the CA in --token-review-client-ca: give kube-apiserver's webhook kubeconfig a client-certificate and client-key"

// tokenReviewRequest is what a review reads of a TokenReview: its spec.
type tokenReviewRequest struct {
	Spec struct {
		Token     string   `json:"token"`
		Audiences []string `json:"audiences"`
	} `json:"spec"`
}

// review answers a TokenReview's body: the status code and the JSON
// answer, the same bytes for either engine. The answer that authenticates
// an app for no particular audience is made once per app (App.review).
func (s *Server) review(body []byte) (int, []byte) {
	var review tokenReviewRequest
	if body == nil || json.Unmarshal(body, &review) != nil {
		return http.StatusBadRequest, errorJSON(categoryValidation, "the body must be an authentication.k8s.io/v1 TokenReview", correlationID())
	}
	now := s.Clock.Now()
	v := s.validate(review.Spec.Token, now)
	audiences, ok := s.audiences(review.Spec.Audiences)
	if v.status == http.StatusOK && !ok {
		v = verdict{status: http.StatusUnauthorized, reason: "audience", match: v.match, message: s.audienceMessage(review.Spec.Audiences)}
	}
	if v.status == http.StatusOK {
		// An authentication is a call of the app like a check: it takes
		// from the app's window and the account's day, so that one app's
		// token cannot spend the account's day through TokenReviews.
		app := v.match.App
		dec := s.Limiter.Take(app.key, app.Namespace, s.limitsFor(app.Namespace), now)
		s.Usage.Record(app.Key(), now, dec.Allowed())
		if !dec.Allowed() {
			which, limit, reason := "its limit of %d calls per 10 seconds", dec.Limit, "rate_limit_app"
			if dec.Refused == ratelimit.AccountDay {
				which, limit, reason = "its account's limit of %d calls per day (UTC)", dec.DailyLimit, "rate_limit_account"
			}
			v = verdict{status: http.StatusTooManyRequests, reason: reason, match: v.match, message: fmt.Sprintf(
				"app %s/%s reached "+which+"; retry after %d s", app.Namespace, app.Name, limit, int64(math.Ceil(dec.RetryAfter.Seconds())))}
		}
	}
	s.logTokenReview(v, now)
	if v.status != http.StatusOK {
		refusals.WithLabelValues(v.reason).Inc()
		resp := newTokenReview()
		resp.Status.Error = v.message
		return http.StatusOK, marshalLine(resp)
	}
	app := v.match.App
	if audiences == nil {
		return http.StatusOK, app.review()
	}
	return http.StatusOK, reviewOf(app, audiences)
}

func newTokenReview() authnv1.TokenReview {
	return authnv1.TokenReview{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"}}
}

// reviewOf is the answer that authenticates app for audiences.
func reviewOf(app *App, audiences []string) []byte {
	resp := newTokenReview()
	resp.Status = authnv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     audiences,
		User: authnv1.UserInfo{
			Username: "privateapp:" + app.Namespace + ":" + app.Name,
			UID:      app.UID,
			Groups:   []string{"privateapps", "privateapps:" + app.Namespace},
			Extra:    map[string]authnv1.ExtraValue{"privateapps.dev/scopes": app.Scopes},
		},
	}
	return marshalLine(resp)
}

// marshalLine is v as json.Encoder writes it: JSON and a newline.
func marshalLine(v any) []byte {
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

// audiences answers which of the audiences a TokenReview asks for app
// tokens are valid for, and whether the review may succeed: audience-
// unaware (no Audiences configured), a review that names audiences gets
// no audience back, which kube-apiserver checks against its own; a
// direct caller that asked for others is told no. Configured, the answer
// is the intersection, and an empty one is a refusal.
func (s *Server) audiences(asked []string) ([]string, bool) {
	if len(s.Audiences) == 0 {
		return nil, true
	}
	if len(asked) == 0 {
		return s.Audiences, true
	}
	var out []string
	for _, a := range asked {
		if slices.Contains(s.Audiences, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, len(out) > 0
}

func (s *Server) audienceMessage(asked []string) string {
	q := make([]string, len(asked))
	for i, a := range asked {
		q[i] = strconv.Quote(truncate(a, 100))
	}
	if len(q) > 10 {
		q = append(q[:10], "...")
	}
	return fmt.Sprintf("app tokens are not valid for the audiences %s; this token service authenticates them for %q (--token-review-audiences)",
		strings.Join(q, ", "), s.Audiences)
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

// Header names in canonical form: Header.Set would otherwise build the
// canonical key anew on every request.
var (
	hdrLimit          = http.CanonicalHeaderKey("X-RateLimit-Limit")
	hdrRemaining      = http.CanonicalHeaderKey("X-RateLimit-Remaining")
	hdrInterval       = http.CanonicalHeaderKey("X-RateLimit-Interval-Milliseconds")
	hdrDaily          = http.CanonicalHeaderKey("X-RateLimit-Daily")
	hdrDailyRemaining = http.CanonicalHeaderKey("X-RateLimit-Daily-Remaining")
	hdrNamespace      = http.CanonicalHeaderKey(HeaderNamespace)
	hdrName           = http.CanonicalHeaderKey(HeaderName)
	hdrAppID          = http.CanonicalHeaderKey(HeaderAppID)
	hdrUser           = http.CanonicalHeaderKey(HeaderUser)
	hdrScopes         = http.CanonicalHeaderKey(HeaderScopes)
	hdrRoute          = http.CanonicalHeaderKey(HeaderRoute)
	intervalMillis    = strconv.FormatInt(ratelimit.Window.Milliseconds(), 10)
	// noRoute is X-PrivateApp-Route of a call allowed by a catalog's
	// unmatchedRequests: Allow.
	noRoute = []string{"-"}
)

// setRateHeaders writes the five rate-limit headers with two allocations:
// one string holding the four numbers and one array behind the five values.
func setRateHeaders(h http.Header, d ratelimit.Decision) {
	var buf [80]byte
	b := buf[:0]
	var ends [4]int
	for i, n := range [4]int64{d.Limit, d.Remaining, d.DailyLimit, d.DailyRemaining} {
		b = strconv.AppendInt(b, n, 10)
		ends[i] = len(b)
	}
	all := string(b)
	v := make([]string, 5)
	v[0], v[1], v[2], v[3], v[4] = all[:ends[0]], all[ends[0]:ends[1]], intervalMillis, all[ends[1]:ends[2]], all[ends[2]:ends[3]]
	h[hdrLimit], h[hdrRemaining], h[hdrInterval], h[hdrDaily], h[hdrDailyRemaining] = v[0:1:1], v[1:2:2], v[2:3:3], v[3:4:4], v[4:5:5]
}

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Status        string `json:"status"`
	Message       string `json:"message"`
	Category      string `json:"category"`
	CorrelationID string `json:"correlationId"`
}

func writeError(w http.ResponseWriter, code int, category, message string) {
	writeErrorID(w, code, category, message, correlationID())
}

// writeErrorID answers an error whose correlation id is also the call-log
// entry's, so the id a client reports finds the call.
func writeErrorID(w http.ResponseWriter, code int, category, message, id string) {
	writeJSON(w, code, ErrorBody{Status: "error", Message: message, Category: category, CorrelationID: id})
}

// errorJSON is the error body writeErrorID writes.
func errorJSON(category, message, id string) []byte {
	return marshalLine(ErrorBody{Status: "error", Message: message, Category: category, CorrelationID: id})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func correlationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
