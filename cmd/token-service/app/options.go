// Package app is the token-service component: it answers gateways'
// checks, access-token-info, TokenReviews of the kube-apiserver and OAuth
// 2.0 introspection from an index of the apps' token digests, counts the
// rate limits, and writes the apps' usage into their status. It needs no
// access to Secrets.
package app

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/privateapps-dev/privateapp-operator/internal/command"
)

// Options are the token service's flags.
type Options struct {
	command.Options

	Addr                    string
	CertFile, KeyFile       string
	Insecure                bool
	LimitsFile              string
	RedisAddr               string
	RedisPasswordFile       string
	RedisTLS                bool
	MaxConnections          int
	MaxConnectionsPerSource int
	RouteHeader             bool
	Audiences               string
	ClientCA                string
	IntrospectionLimit      int
	IntrospectionClients    string
	Issuer                  string
	StaleBound              time.Duration
	FlushInterval           time.Duration

	// Where decisions go: the insights component's ingest endpoint.
	CallLogURL, CallLogCA, CallLogTokenFile string
	SensitiveParams                         string
}

// AddFlags adds the token service's flags to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Options.AddFlags(fs)
	fs.StringVar(&o.Addr, "token-service-bind-address", ":8443", "Address of the token service.")
	fs.StringVar(&o.CertFile, "token-service-tls-cert", "", "TLS certificate of the token service (PEM); reloaded when it changes.")
	fs.StringVar(&o.KeyFile, "token-service-tls-key", "", "TLS key of the token service (PEM).")
	fs.BoolVar(&o.Insecure, "token-service-insecure", false, "Serve the token service over plain HTTP; for local use only.")
	fs.StringVar(&o.LimitsFile, "limits-file", "", "YAML file with the rate limits by edition; the defaults and the format are in docs/token-service.md#rate-limits.")
	fs.StringVar(&o.RedisAddr, "rate-limit-redis", "", "host:port of a Redis that every token-service replica shares its rate-limit counters in; empty counts per replica (N replicas allow N times the limits).")
	fs.StringVar(&o.RedisPasswordFile, "rate-limit-redis-password-file", "", "File with the Redis password (AUTH), e.g. mounted from a Secret.")
	fs.BoolVar(&o.RedisTLS, "rate-limit-redis-tls", false, "Connect to Redis over TLS (system roots).")
	fs.IntVar(&o.MaxConnectionsPerSource, "token-service-max-connections-per-source", 512, "Connections one source address may hold on the token service; one more is closed at once (privateapps_token_service_connections_refused_total). 0 is no bound. Gateways reach it only with more concurrent checks than this on one pod and no upstream keepalive.")
	fs.IntVar(&o.MaxConnections, "token-service-max-connections", 2048, "Connections the token service serves at once; near the bound idle and silent ones are shed, at it more wait in the listen backlog. 0 is no bound. A TLS connection stalled while its request arrives holds about 64 KiB (measured: docs/benchmarks.md#a-full-house), so 2048 of them stay under the chart's 256 MiB limit; raise it only with the memory limit.")
	fs.BoolVar(&o.RouteHeader, "token-service-route-header", false, "Name the matched APICatalog route in X-PrivateApp-Route on allowed checks, for gateways to log or pass on (one more answer header on every check).")
	fs.StringVar(&o.Audiences, "token-review-audiences", "", "Comma-separated audiences a TokenReview may authenticate app tokens for. Empty is audience-unaware, as kube-apiserver expects of a token webhook: app tokens are valid for the Kubernetes API's own audiences only, and a TokenReview that asks for another audience is refused.")
	fs.StringVar(&o.ClientCA, "token-review-client-ca", "", "PEM file of the CA whose client certificates the token service verifies; with it, TokenReview answers only callers that present one (kube-apiserver, configured with client-certificate and client-key in its webhook kubeconfig). The other endpoints need none.")
	fs.IntVar(&o.IntrospectionLimit, "introspection-rate-limit", 50, "access-token-info calls, TokenReviews and unauthenticated OAuth 2.0 introspections one source address may make per second (TokenReviews authenticated by client certificate and introspections by declared clients are not counted); 0 is no limit.")
	fs.StringVar(&o.IntrospectionClients, "introspection-clients-file", "", "YAML file (mount it from a Secret) of the OAuth 2.0 resource servers that may introspect tokens at POST /oauth2/introspect (RFC 7662): clients[].id, secret (16+ characters) or certificate: true, and optional catalogs; read again when it changes. Empty: no client may introspect (docs/token-service.md#oauth-20-resource-servers).")
	fs.StringVar(&o.Issuer, "token-service-issuer", "", "Issuer URL of the token service's OAuth 2.0 metadata (/.well-known/oauth-authorization-server, RFC 8414) and introspection answers: the https URL resource servers reach it by, without a trailing slash. Empty derives it from each request's Host.")
	fs.DurationVar(&o.StaleBound, "token-index-stale-bound", 15*time.Second, "How long the token index's watch of PrivateApps may fail, while the API server answers, before this replica reports not ready (so traffic moves to replicas that are current); 0 never.")
	fs.DurationVar(&o.FlushInterval, "usage-flush-interval", 30*time.Second, "How often call counts are written into PrivateApp status.")
	fs.StringVar(&o.CallLogURL, "call-log-url", "", "Ingest URL of the insights component (https://<service>:8445) that the token service sends its decisions to for the call log; empty logs no calls.")
	fs.StringVar(&o.CallLogCA, "call-log-ca-file", "", "CA bundle that verifies --call-log-url (the operator's CA); empty uses the system roots.")
	fs.StringVar(&o.CallLogTokenFile, "call-log-token-file", "", "File with the token-service replicas' shared secret, presented to --call-log-url (the insights component's --call-log-token-service-token-file).")
	fs.StringVar(&o.SensitiveParams, "call-log-sensitive-params", "", "Comma-separated query parameters whose values the call log redacts, besides the usual credential names (see docs/calllog.md).")
}

// Validate lists every mistake of the command line at once, each saying
// what to do. Checks that need a file's content stay where it is read.
func (o *Options) Validate() []error {
	out := o.Options.Validate()
	add := func(format string, a ...any) { out = append(out, fmt.Errorf(format, a...)) }
	if o.Addr == "" {
		add("--token-service-bind-address is empty; give the address the token service listens on, e.g. :8443")
	}
	switch {
	case !o.Insecure && (o.CertFile == "" || o.KeyFile == ""):
		add("the token service needs --token-service-tls-cert and --token-service-tls-key, or --token-service-insecure to serve plain HTTP for local use")
	case o.Insecure && (o.CertFile != "" || o.KeyFile != ""):
		add("--token-service-insecure serves plain HTTP: drop it, or drop --token-service-tls-cert and --token-service-tls-key")
	}
	if o.Insecure && o.ClientCA != "" {
		add("--token-review-client-ca needs TLS: client certificates cannot be verified with --token-service-insecure")
	}
	if issuer := strings.TrimSuffix(o.Issuer, "/"); issuer != "" {
		if u, err := url.Parse(issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			add("--token-service-issuer %q must be an https URL without query or fragment, such as https://privateapps-token-service.privateapps-system.svc:8443", o.Issuer)
		}
	}
	if o.FlushInterval <= 0 {
		add("--usage-flush-interval is %s; give how often call counts are written, e.g. 30s", o.FlushInterval)
	}
	if o.MaxConnections < 0 || o.MaxConnectionsPerSource < 0 || o.IntrospectionLimit < 0 {
		add("--token-service-max-connections, --token-service-max-connections-per-source and --introspection-rate-limit are zero (no bound) or more")
	}
	if o.CallLogURL == "" && (o.CallLogCA != "" || o.CallLogTokenFile != "") {
		add("--call-log-ca-file and --call-log-token-file are for --call-log-url; give it, or drop them")
	}
	if o.CallLogURL != "" {
		if u, err := url.Parse(o.CallLogURL); err != nil || u.Scheme != "https" || u.Host == "" {
			add("--call-log-url %q must be the https URL of the insights component's ingest endpoint, such as https://privateapp-insights.privateapps-system.svc:8445", o.CallLogURL)
		}
		if o.CallLogTokenFile == "" {
			add("--call-log-url needs --call-log-token-file: the insights component takes decisions only from senders that present the token service's secret")
		}
	}
	return out
}
