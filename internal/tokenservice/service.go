package tokenservice

import (
	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

// Paths the token service answers.
const (
	PathAccessTokenInfo = "/oauth/v2/private-apps/get/access-token-info" //nolint:gosec // G101: a path, not a credential
	PathCheck           = "/v1/check"
	PathTokenReview     = "/apis/authentication.k8s.io/v1/tokenreviews"
)

// maxBody bounds request bodies; a token-info request is tens of bytes and a
// TokenReview well under this. The listener refuses a larger one before any
// handler runs.
const maxBody = 16 << 10

// Catalogs gives the API catalogs in force.
type Catalogs interface {
	Current() *catalog.Set
}

// AccountLabels tells the edition and API add-on of a namespace.
type AccountLabels interface {
	Labels(namespace string) (edition string, apiLimitIncrease bool)
}

// Service is the token service: it decides gateways' checks, answers token
// introspection (access-token-info, daily usage, OAuth 2.0) and
// Kubernetes TokenReviews. Handler serves it over HTTP; a Listener listens
// for it.
type Service struct {
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
	// exist. Off by default: every answer header is written on every
	// check a gateway waits for.
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

func (s *Service) catalogs() *catalog.Set {
	if s.Catalogs == nil {
		return catalog.Empty
	}
	return s.Catalogs.Current()
}

func (s *Service) limitsFor(ns string) ratelimit.Limits {
	edition, addOn := "", false
	if s.Accounts != nil {
		edition, addOn = s.Accounts.Labels(ns)
	}
	return s.Limits.For(edition, addOn)
}
