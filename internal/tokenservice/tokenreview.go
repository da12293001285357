package tokenservice

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

const noClientCertificate = "TokenReview needs a client certificate signed by " +
	"the CA in --token-review-client-ca: give kube-apiserver's webhook kubeconfig a client-certificate and client-key"

// serveTokenReview is Kubernetes webhook token authentication, answered
// without making a net/http request of it: kube-apiserver asks one for
// every token it has not cached. It returns the status code.
//
// One gate: a caller whose client certificate the listener verified
// (kube-apiserver, with --token-review-client-ca) passes; any other is
// refused when TokenReviewNeedsClientCert, and otherwise counted against
// its source's introspection limit.
func (s *Service) serveTokenReview(ctx *fasthttp.RequestCtx) int {
	if !certified(ctx) {
		if s.TokenReviewNeedsClientCert {
			refusals.WithLabelValues("no_client_certificate").Inc()
			writeErrorCtx(ctx, http.StatusUnauthorized, categoryAuthentication, noClientCertificate, correlationID())
			return http.StatusUnauthorized
		}
		if source := ctx.RemoteIP().String(); !s.Introspection.allow(source, s.Clock.Now()) {
			ctx.Response.Header.Set("Retry-After", "1")
			writeErrorCtx(ctx, http.StatusTooManyRequests, categoryRateLimits, s.introspectionRefused(source), correlationID())
			return http.StatusTooManyRequests
		}
	}
	code, out := s.review(ctx.PostBody())
	ctx.SetStatusCode(code)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetBody(out)
	return code
}

// certified reports whether the caller presented a client certificate
// that the serving TLS configuration verified.
func certified(ctx *fasthttp.RequestCtx) bool {
	if !ctx.IsTLS() {
		return false
	}
	st := ctx.TLSConnectionState()
	return st != nil && len(st.VerifiedChains) > 0
}

// tokenReviewRequest is what a review reads of a TokenReview: its spec.
type tokenReviewRequest struct {
	Spec struct {
		Token     string   `json:"token"`
		Audiences []string `json:"audiences"`
	} `json:"spec"`
}

// review answers a TokenReview's body: the status code and the JSON
// answer. An authentication counts as a call of the app, and past the
// app's or the account's limit the answer is "not authenticated", with the
// reason. The answer that authenticates an app for no particular audience
// is made once per app (App.review).
func (s *Service) review(body []byte) (int, []byte) {
	var review tokenReviewRequest
	if json.Unmarshal(body, &review) != nil {
		return http.StatusBadRequest, errorJSON(categoryValidation, "the body must be an authentication.k8s.io/v1 TokenReview", correlationID())
	}
	now := s.Clock.Now()
	v := s.validate(review.Spec.Token, now)
	audiences, ok := s.audiences(review.Spec.Audiences)
	if v.status == statusOK && !ok {
		v = verdict{status: statusUnauthorized, reason: "audience", match: v.match, message: s.audienceMessage(review.Spec.Audiences)}
	}
	if v.status == statusOK {
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
			v = verdict{status: statusTooManyRequests, reason: reason, match: v.match, message: fmt.Sprintf(
				"app %s/%s reached "+which+"; retry after %d s", app.Namespace, app.Name, limit, int64(math.Ceil(dec.RetryAfter.Seconds())))}
		}
	}
	s.logTokenReview(v, now)
	if v.status != statusOK {
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

// audiences answers which of the audiences a TokenReview asks for app
// tokens are valid for, and whether the review may succeed: audience-
// unaware (no Audiences configured), a review that names audiences gets
// no audience back, which kube-apiserver checks against its own; a
// direct caller that asked for others is told no. Configured, the answer
// is the intersection, and an empty one is a refusal.
func (s *Service) audiences(asked []string) ([]string, bool) {
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

func (s *Service) audienceMessage(asked []string) string {
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
