// Package metricsauth guards the metrics endpoint: only a Bearer token the
// kube-apiserver authenticates (TokenReview), whose user may get the
// request's path (SubjectAccessReview on a non-resource URL), is let
// through. It is controller-runtime's filters.WithAuthenticationAndAuthorization
// with one difference: a token the kube-apiserver refuses is answered 401,
// not 500 (the delegating authenticator reports a refused token as an
// error, so the upstream filter answered every bad token with a server
// error and logged it at error level).
package metricsauth

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// backoff retries a review the kube-apiserver did not answer (the values of
// k8s.io/apiserver's DefaultAuthWebhookRetryBackoff).
func backoff() *wait.Backoff {
	return &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
}

// Filter is a metricsserver.FilterProvider.
func Filter(config *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	reviews, err := authenticationv1.NewForConfigAndClient(config, httpClient)
	if err != nil {
		return nil, err
	}
	accessReviews, err := authorizationv1.NewForConfigAndClient(config, httpClient)
	if err != nil {
		return nil, err
	}
	authenticator, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserver.AnonymousAuthConfig{Enabled: false},
		CacheTTL:                 time.Minute,
		TokenAccessReviewClient:  reviews,
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      backoff(),
	}.New()
	if err != nil {
		return nil, fmt.Errorf("metrics authentication: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: accessReviews,
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       backoff(),
	}.New()
	if err != nil {
		return nil, fmt.Errorf("metrics authorization: %w", err)
	}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			res, ok, err := authenticator.AuthenticateRequest(req)
			if err != nil || !ok {
				// The reason is the kube-apiserver's (never the token).
				log.V(1).Info("metrics request not authenticated", "reason", fmt.Sprint(err))
				http.Error(w, "Unauthorized: send a Bearer token of a user that may get "+req.URL.Path, http.StatusUnauthorized)
				return
			}
			decision, _, err := authz.Authorize(req.Context(), authorizer.AttributesRecord{
				User: res.User, Verb: strings.ToLower(req.Method), Path: req.URL.Path,
			})
			if err != nil {
				log.Error(err, "metrics authorization could not be checked", "user", res.User.GetName())
				http.Error(w, "authorization could not be checked", http.StatusInternalServerError)
				return
			}
			if decision != authorizer.DecisionAllow {
				http.Error(w, fmt.Sprintf("Forbidden: user %q may not get %s (bind the metrics-reader ClusterRole)", res.User.GetName(), req.URL.Path), http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, req)
		}), nil
	}, nil
}
