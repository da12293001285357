// Command manager runs the privateapp-operator: the PrivateApp controller
// (and, as they land, the TokenRotation and AppNotification controllers, the
// admission webhooks and the token service).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/postgres"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/sqlite"
	"github.com/privateapps-dev/privateapp-operator/internal/catalogfeed"
	"github.com/privateapps-dev/privateapp-operator/internal/certs"
	"github.com/privateapps-dev/privateapp-operator/internal/controller"
	"github.com/privateapps-dev/privateapp-operator/internal/hubid"
	"github.com/privateapps-dev/privateapp-operator/internal/ingest"
	"github.com/privateapps-dev/privateapp-operator/internal/insights"
	"github.com/privateapps-dev/privateapp-operator/internal/metricsauth"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
	appwebhook "github.com/privateapps-dev/privateapp-operator/internal/webhook"
)

func main() {
	var (
		metricsAddr, probeAddr string
		metricsSecure          bool
		metricsCertDir         string
		pprofAddr              string
		leaderElect            bool
		leaseDuration          time.Duration
		renewDeadline          time.Duration
		retryPeriod            time.Duration
		maxApps, concurrency   int
		appMetricsLimit        int
		gracePeriod            time.Duration
		kubeQPS                float64
		kubeBurst              int
		ts                     tokenServiceFlags
		webhookCertDir         string
		webhookPort            int
		scopeCatalog           string
		notificationsConfig    string
		runControllers         bool
		selfSignedCerts        bool
		certPrefix             string
		idRegistry             string
		webhookConfigurations  string
		webhookCertExtraNames  string
		webhookService         string
		operatorNamespace      string
		ins                    insightsFlags
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "Address of the metrics endpoint, e.g. :8080; 0 turns it off.")
	flag.BoolVar(&metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to clients the kube-apiserver authenticates (TokenReview) and authorizes (SubjectAccessReview: get on the non-resource URL /metrics, which the metrics-reader ClusterRole grants); others get 401 or 403. false serves plain HTTP to anyone who reaches the address (local development only: the metrics name every tenant's apps).")
	flag.StringVar(&metricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for the HTTPS metrics endpoint, read again when they change; empty: a self-signed certificate made at start.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "Address of Go's net/http/pprof profiles (heap, CPU), e.g. 127.0.0.1:6060; empty turns them off. Profiles name no token, but bind it to loopback.")
	flag.IntVar(&appMetricsLimit, "app-metrics-limit", controller.DefaultAppMetricsLimit, "How many apps get metrics series of their own (up to eight each: calls, refusals, token times, state); past it, apps are left out in name order and privateapps_app_metrics_truncated is 1. Negative: none.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader among replicas; needed when running more than one.")
	flag.DurationVar(&leaseDuration, "leader-elect-lease-duration", 12*time.Second, "How long standby replicas wait after the leader's last renewal before taking over (a killed leader is replaced within about this long).")
	flag.DurationVar(&renewDeadline, "leader-elect-renew-deadline", 8*time.Second, "How long the leader keeps trying to renew before it gives up leading; less than --leader-elect-lease-duration.")
	flag.DurationVar(&retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often replicas try to acquire or renew the lease.")
	flag.IntVar(&maxApps, "max-apps-per-namespace", controller.DefaultMaxAppsPerNamespace, "How many PrivateApps in one namespace may hold tokens; the rest wait for a slot.")
	flag.DurationVar(&gracePeriod, "secret-repair-grace-period", controller.DefaultGracePeriod, "How long the previous token stays valid after a token Secret is deleted or edited out of band.")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", 4, "How many PrivateApps are reconciled in parallel.")
	flag.Float64Var(&kubeQPS, "kube-api-qps", 50, "Requests per second to the Kubernetes API server.")
	flag.IntVar(&kubeBurst, "kube-api-burst", 100, "Burst of requests to the Kubernetes API server.")
	flag.StringVar(&ts.addr, "token-service-bind-address", ":8443", "Address of the token service; empty turns it off.")
	flag.StringVar(&ts.cert, "token-service-tls-cert", "", "TLS certificate of the token service (PEM); reloaded when it changes.")
	flag.StringVar(&ts.key, "token-service-tls-key", "", "TLS key of the token service (PEM).")
	flag.BoolVar(&ts.insecure, "token-service-insecure", false, "Serve the token service over plain HTTP; for local use only.")
	flag.StringVar(&ts.limitsFile, "limits-file", "", "YAML file with the rate limits by edition (see docs/token-service.md); the defaults are in docs/token-service.md#rate-limits.")
	flag.StringVar(&ts.redisAddr, "rate-limit-redis", "", "host:port of a Redis that every token-service replica shares its rate-limit counters in; empty counts per replica (N replicas allow N times the limits).")
	flag.StringVar(&ts.redisPasswordFile, "rate-limit-redis-password-file", "", "File with the Redis password (AUTH), e.g. mounted from a Secret.")
	flag.BoolVar(&ts.redisTLS, "rate-limit-redis-tls", false, "Connect to Redis over TLS (system roots).")
	flag.IntVar(&ts.maxConnectionsPerSource, "token-service-max-connections-per-source", 512, "Connections one source address may hold on the token service; one more is closed at once (privateapps_token_service_connections_refused_total). 0 is no bound. Gateways reach it only with more concurrent checks than this on one pod and no upstream keepalive.")
	flag.IntVar(&ts.maxConnections, "token-service-max-connections", 2048, "Connections the token service serves at once; near the bound idle and silent ones are shed, at it more wait in the listen backlog. 0 is no bound. A TLS connection stalled while its request arrives holds about 64 KiB (measured: docs/benchmarks.md#a-full-house), so 2048 of them stay under the chart's 256 MiB limit; raise it only with the memory limit.")
	flag.BoolVar(&ts.routeHeader, "token-service-route-header", false, "Name the matched APICatalog route in X-PrivateApp-Route on allowed checks, for gateways to log or pass on (one more answer header on every check).")
	flag.StringVar(&ts.engine, "token-service-http-engine", string(tokenservice.EngineFastHTTP), "HTTP engine of the token service: fasthttp (serves /v1/check at close to the cost of answering at all; HTTP/1.1) or net/http (HTTP/1.1 and HTTP/2). Both give the same answers (docs/token-service.md#http-engine).")
	flag.StringVar(&ts.audiences, "token-review-audiences", "", "Comma-separated audiences a TokenReview may authenticate app tokens for. Empty is audience-unaware, as kube-apiserver expects of a token webhook: app tokens are valid for the Kubernetes API's own audiences only, and a TokenReview that asks for another audience is refused.")
	flag.StringVar(&ts.clientCA, "token-review-client-ca", "", "PEM file of the CA whose client certificates the token service verifies; with it, TokenReview answers only callers that present one (kube-apiserver, configured with client-certificate and client-key in its webhook kubeconfig). The other endpoints need none.")
	flag.IntVar(&ts.introspectionLimit, "introspection-rate-limit", 50, "access-token-info calls, TokenReviews and unauthenticated OAuth 2.0 introspections one source address may make per second (TokenReviews authenticated by client certificate and introspections by declared clients are not counted); 0 is no limit.")
	flag.StringVar(&ts.oauthClientsFile, "introspection-clients-file", "", "YAML file (mount it from a Secret) of the OAuth 2.0 resource servers that may introspect tokens at POST /oauth2/introspect (RFC 7662): clients[].id, secret (16+ characters) or certificate: true, and optional catalogs; read again when it changes. Empty: no client may introspect (docs/token-service.md#oauth-20-resource-servers).")
	flag.StringVar(&ts.issuer, "token-service-issuer", "", "Issuer URL of the token service's OAuth 2.0 metadata (/.well-known/oauth-authorization-server, RFC 8414) and introspection answers: the https URL resource servers reach it by, without a trailing slash. Empty derives it from each request's Host.")
	flag.DurationVar(&ts.staleBound, "token-index-stale-bound", 15*time.Second, "How long the token index's watch of PrivateApps may fail, while the API server answers, before this replica reports not ready (so traffic moves to replicas that are current); 0 never.")
	flag.DurationVar(&ts.flushInterval, "usage-flush-interval", 30*time.Second, "How often call counts are written into PrivateApp status.")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "", "Directory with tls.crt and tls.key for the admission webhooks; empty turns them off (the controllers still enforce the cap and every rule).")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port of the admission webhooks.")
	flag.StringVar(&scopeCatalog, "scope-catalog", "", "Removed: APICatalog objects say which scopes apps may ask for (docs/apicatalogs.md#migrating-from---scope-catalog).")
	flag.StringVar(&notificationsConfig, "notifications-config", "", "YAML file with the SMTP server, webhook and directory of AppNotifications (see docs/appnotifications.md); without it notifications are recorded but not sent.")
	flag.StringVar(&operatorNamespace, "operator-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the operator, where the cluster-wide recipients directory lives (default $POD_NAMESPACE).")
	flag.BoolVar(&runControllers, "run-controllers", true, "Run the controllers (and the admission webhooks). False runs only the token service, which needs no access to Secrets: the Helm chart runs it so, as its own Deployment.")
	flag.BoolVar(&selfSignedCerts, "self-signed-certs", false, "Run the operator's own CA: keep <prefix>-ca, <prefix>-webhook-tls and <prefix>-token-service-tls valid in the operator namespace, renewing them before they expire, write the webhook certificate into --webhook-cert-dir and inject the CA into --webhook-configurations.")
	flag.StringVar(&idRegistry, "id-registry-configmap", "privateapp-operator-ids", "ConfigMap in --operator-namespace (namespace default when that is empty) that hands out the numeric hubId, appId and userId HubSpot's API shows; empty gives no numbers (docs/privateapps.md#numeric-ids).")
	flag.StringVar(&certPrefix, "cert-name-prefix", "privateapp", "Prefix of the Secrets and Services of --self-signed-certs.")
	flag.StringVar(&webhookConfigurations, "webhook-configurations", "", "Comma-separated names of the webhook configurations --self-signed-certs injects its CA into (default: the prefix).")
	flag.StringVar(&webhookService, "webhook-service", "", "Name of the webhook Service whose DNS names --self-signed-certs puts in the webhook certificate (default <prefix>-webhook).")
	flag.StringVar(&ins.apiService, "insights-apiservice", "", "With --self-signed-certs: the insights APIService (v1alpha1.insights.privateapps.dev) to inject the CA into; the operator then also keeps <prefix>-insights-tls valid for the Service <prefix>-insights.")
	flag.StringVar(&webhookCertExtraNames, "webhook-cert-extra-names", "", "Comma-separated extra DNS names or IP addresses for the --self-signed-certs webhook certificate (for an API server that calls the webhooks by URL, as in local development).")
	flag.StringVar(&ins.addr, "insights-bind-address", "", "Address of the aggregated API server of insights.privateapps.dev (kubectl get calls), e.g. :8444; empty turns it off. Needs --call-log-sqlite.")
	flag.StringVar(&ins.cert, "insights-tls-cert", "", "Serving certificate of the insights API (PEM), whose CA the APIService's caBundle holds; reloaded when it changes. Empty makes a self-signed one (local use only).")
	flag.StringVar(&ins.key, "insights-tls-key", "", "Key of --insights-tls-cert (PEM).")
	flag.StringVar(&ins.kubeconfig, "insights-kubeconfig", os.Getenv("KUBECONFIG"), "Kubeconfig with which the insights API asks the kube-apiserver who a caller is and what they may read (default $KUBECONFIG; empty is the in-cluster config).")
	flag.StringVar(&ins.sqlite, "call-log-sqlite", "", "File of the call log's embedded SQLite database; the token service of this process logs every call into it. One process may hold it.")
	flag.StringVar(&ins.ingestAddr, "call-log-ingest-bind-address", "", "HTTPS address of the call log's ingest endpoints (gateway access logs as JSON lines, the kube-apiserver audit webhook, token-service replicas); uses --insights-tls-cert. Empty turns it off.")
	flag.StringVar(&ins.ingestTokenFile, "call-log-ingest-token-file", "", "Removed: one secret for every sender let whoever read a gateway's syslog line post audit events and token-service decisions. Use --call-log-gateway-token-file, --call-log-audit-token-file and --call-log-token-service-token-file.")
	flag.StringVar(&ins.gatewayTokenFile, "call-log-gateway-token-file", "", "File with the gateways' shared secret (at least 16 characters): Authorization: Bearer on /ingest/v1/access-log, or \"key\" in a syslog line. Gateways' credential only: it cannot post audit events or token-service decisions.")
	flag.StringVar(&ins.auditTokenFile, "call-log-audit-token-file", "", "File with the kube-apiserver audit webhook's shared secret (at least 16 characters), taken only on /ingest/v1/audit.")
	flag.StringVar(&ins.tokenServiceTokenFile, "call-log-token-service-token-file", "", "File with the token-service replicas' shared secret (at least 16 characters), taken only on /ingest/v1/calls; they present it with --call-log-token-file.")
	flag.StringVar(&ins.ingestClientCA, "call-log-ingest-client-ca", "", "CA file whose client certificates the ingest endpoints accept instead of a shared secret; the certificate's common name is its sender kind (gateway, audit or token-service), and it is taken only at that kind's endpoint.")
	flag.StringVar(&ins.syslogAddr, "call-log-syslog-bind-address", "", "UDP address for gateway access logs over syslog (nginx access_log syslog:server=...); each line carries the shared secret. Empty turns it off.")
	flag.StringVar(&ins.remoteURL, "call-log-url", "", "Ingest URL of the insights component (https://<service>:8445) that this process's token service sends its decisions to, instead of a store of its own.")
	flag.StringVar(&ins.remoteCA, "call-log-ca-file", "", "CA bundle that verifies --call-log-url (the operator's CA); empty uses the system roots.")
	flag.StringVar(&ins.remoteTokenFile, "call-log-token-file", "", "File with the token-service replicas' shared secret, presented to --call-log-url (the insights component's --call-log-token-service-token-file).")
	flag.StringVar(&ins.postgresFile, "call-log-postgres-dsn-file", "", "File with a PostgreSQL connection string (postgres://user:password@host/db?sslmode=verify-full) for a call log that several replicas share; instead of --call-log-sqlite.")
	flag.DurationVar(&ins.retention, "call-log-retention", calllog.DefaultRetention, "How long the call log keeps calls, in whole UTC days (720h is 30 days).")
	flag.DurationVar(&ins.reportWait, "call-log-gateway-report-wait", calllog.DefaultReportWait, "How long a call allowed for a gateway that reports its calls (gateway=<name> in its check URL) waits for that gateway's access-log line before it shows reason no_gateway_report; longer than the gateway lets a request run.")
	flag.StringVar(&ins.sensitive, "call-log-sensitive-params", "", "Comma-separated query parameters whose values the call log redacts, besides the usual credential names (see docs/calllog.md).")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	// Every mistake of the command line at once, before anything starts.
	if problems := (startFlags{runControllers: runControllers, selfSignedCerts: selfSignedCerts, scopeCatalog: scopeCatalog,
		operatorNamespace: operatorNamespace, maxApps: maxApps, concurrency: concurrency, leaderElect: leaderElect,
		leaseDuration: leaseDuration, renewDeadline: renewDeadline, retryPeriod: retryPeriod, ts: ts, ins: ins}).problems(); len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "The command line has %d problem(s); nothing was started:\n", len(problems))
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "  - %s\n", p)
		}
		os.Exit(2)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	utilruntime.Must(apiregistrationv1.AddToScheme(scheme))

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(kubeQPS), kubeBurst
	// The token index's health follows its informer's list and watch calls.
	ts.health = &tokenservice.IndexHealth{Clock: clock.RealClock{}, Bound: ts.staleBound, APIServerAnswers: apiServerAnswers(cfg)}
	cacheOptions := controller.CacheOptions()
	cacheOptions.NewInformer = ts.health.NewInformer
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOptions(metricsAddr, metricsSecure, metricsCertDir),
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "privateapp-operator.privateapps.dev",
		LeaderElectionNamespace: operatorNamespace, // empty: the pod's own namespace
		LeaseDuration:           &leaseDuration,
		RenewDeadline:           &renewDeadline,
		RetryPeriod:             &retryPeriod,
		Cache:                   cacheOptions,
		WebhookServer:           webhook.NewServer(webhook.Options{Port: webhookPort, CertDir: webhookCertDir}),
	})
	if err != nil {
		log.Error(err, "unable to create the manager")
		os.Exit(1)
	}

	// Every process compiles the API catalogs for itself: the token service
	// matches routes, the webhooks and the controller check scopes.
	catalogs := catalogfeed.New(ctrl.Log.WithName("catalogs"))
	if err := catalogs.Register(context.Background(), mgr.GetCache()); err != nil {
		log.Error(err, "unable to watch APICatalogs")
		os.Exit(1)
	}
	utilruntime.Must(mgr.Add(catalogs))

	if runControllers {
		if err := (&controller.PrivateAppReconciler{
			Client:                  mgr.GetClient(),
			APIReader:               mgr.GetAPIReader(),
			Recorder:                mgr.GetEventRecorder("privateapp-operator"),
			MaxAppsPerNamespace:     maxApps,
			GracePeriod:             gracePeriod,
			MaxConcurrentReconciles: concurrency,
			Catalogs:                catalogs,
			IDs:                     idRegistryFor(mgr, operatorNamespace, idRegistry),
		}).SetupWithManager(mgr); err != nil {
			log.Error(err, "unable to set up the PrivateApp controller")
			os.Exit(1)
		}
		if err := (&controller.APICatalogReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("privateapp-operator")}).SetupWithManager(mgr); err != nil {
			log.Error(err, "unable to set up the APICatalog controller")
			os.Exit(1)
		}
		if err := (&controller.TokenRotationReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
			log.Error(err, "unable to set up the TokenRotation controller")
			os.Exit(1)
		}
		channels, err := notify.LoadConfig(notificationsConfig, operatorNamespace)
		if err != nil {
			log.Error(err, "invalid --notifications-config")
			os.Exit(2)
		}
		if err := (&controller.AppNotificationReconciler{
			Client:                  mgr.GetClient(),
			APIReader:               mgr.GetAPIReader(),
			Recorder:                mgr.GetEventRecorder("privateapp-operator"),
			Channels:                channels,
			MaxConcurrentReconciles: 2,
		}).SetupWithManager(mgr); err != nil {
			log.Error(err, "unable to set up the AppNotification controller")
			os.Exit(1)
		}
		if webhookCertDir != "" {
			if err := (&appwebhook.PrivateAppWebhook{Reader: mgr.GetAPIReader(), MaxAppsPerNamespace: maxApps,
				Catalogs: catalogs}).SetupWithManager(mgr); err != nil {
				log.Error(err, "unable to set up the PrivateApp webhooks")
				os.Exit(1)
			}
			if err := (&appwebhook.APICatalogWebhook{Reader: mgr.GetAPIReader()}).SetupWithManager(mgr); err != nil {
				log.Error(err, "unable to set up the APICatalog webhook")
				os.Exit(1)
			}
			if err := (&appwebhook.TokenRotationWebhook{Reader: mgr.GetAPIReader()}).SetupWithManager(mgr); err != nil {
				log.Error(err, "unable to set up the TokenRotation webhook")
				os.Exit(1)
			}
			if err := (&appwebhook.AppNotificationWebhook{Reader: mgr.GetAPIReader(), Channels: channels}).SetupWithManager(mgr); err != nil {
				log.Error(err, "unable to set up the AppNotification webhook")
				os.Exit(1)
			}
		}
	}
	var calls tokenservice.CallLog
	if ins.remoteURL != "" {
		queue, err := setUpRemoteCallLog(mgr, ins)
		if err != nil {
			log.Error(err, "unable to set up the call log")
			os.Exit(2)
		}
		calls = queue
	} else if ins.sqlite != "" || ins.postgresFile != "" || ins.addr != "" || ins.ingestAddr != "" || ins.syslogAddr != "" {
		queue, err := setUpInsights(mgr, ins)
		if err != nil {
			log.Error(err, "unable to set up the call log")
			os.Exit(1)
		}
		calls = queue
	}
	if ts.addr != "" {
		if err := setUpTokenService(mgr, ts, catalogs, calls); err != nil {
			log.Error(err, "unable to set up the token service")
			os.Exit(1)
		}
	}
	if selfSignedCerts && runControllers {
		if err := setUpCertRotator(mgr, operatorNamespace, certPrefix, webhookService, webhookConfigurations, webhookCertExtraNames, webhookCertDir, ins.apiService); err != nil {
			log.Error(err, "unable to set up the operator's certificates")
			os.Exit(1)
		}
	}
	if runControllers {
		// The apps as their status says, once per cluster (not per
		// token-service replica), and the notification deliveries.
		metrics.Registry.MustRegister(controller.AppsByConnection{Reader: mgr.GetCache(), Limit: appMetricsLimit})
		metrics.Registry.MustRegister(controller.NotificationCollectors()...)
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	if ts.addr != "" {
		// Ready once the token service listens (its index synced), and
		// not while its index is stale past the bound (docs/token-service.md).
		ts.health.Export()
		utilruntime.Must(mgr.AddReadyzCheck("token-index", ts.health.Check))
	} else {
		utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))
	}

	log.Info("starting the manager", "maxAppsPerNamespace", maxApps)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "the manager stopped with an error")
		os.Exit(1)
	}
}

type tokenServiceFlags struct {
	addr, cert, key, limitsFile  string
	insecure, routeHeader        bool
	audiences, clientCA          string
	introspectionLimit           int
	oauthClientsFile, issuer     string
	maxConnections               int
	maxConnectionsPerSource      int
	engine                       string
	flushInterval                time.Duration
	redisAddr, redisPasswordFile string
	redisTLS                     bool
	staleBound                   time.Duration
	health                       *tokenservice.IndexHealth
}

// apiServerAnswers asks the API server for its version: whether it answers
// this process at all.
func apiServerAnswers(cfg *rest.Config) func(context.Context) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return func(context.Context) error { return err }
	}
	return func(ctx context.Context) error {
		return cs.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Error()
	}
}

// idRegistryFor is the registry of HubSpot-style ids, or nil when name is
// empty.
func idRegistryFor(mgr ctrl.Manager, namespace, name string) controller.IDRegistry {
	if name == "" {
		return nil
	}
	if namespace == "" {
		namespace = metav1.NamespaceDefault // out of the cluster (make dev, the tests)
	}
	return &hubid.Registry{Reader: mgr.GetAPIReader(), Writer: mgr.GetClient(), Key: types.NamespacedName{Namespace: namespace, Name: name},
		InUse: func(ctx context.Context) (int64, error) { return hubid.LargestInUse(ctx, mgr.GetAPIReader()) }}
}

func setUpTokenService(mgr ctrl.Manager, f tokenServiceFlags, catalogs *catalogfeed.Feed, calls tokenservice.CallLog) error {
	limits, err := tokenservice.LoadLimits(f.limitsFile)
	if err != nil {
		return err
	}
	ix, accounts, usage := tokenservice.NewIndex(), tokenservice.NewNamespaceLabels(), tokenservice.NewUsage()
	log := ctrl.Log.WithName("token-service")
	local := ratelimit.New()
	var limiter ratelimit.Taker = local
	if f.redisAddr != "" {
		opts := &redis.Options{Addr: f.redisAddr, DialTimeout: time.Second, ReadTimeout: 100 * time.Millisecond,
			WriteTimeout: 100 * time.Millisecond, PoolSize: 64}
		if f.redisPasswordFile != "" {
			b, err := os.ReadFile(f.redisPasswordFile)
			if err != nil {
				return fmt.Errorf("--rate-limit-redis-password-file: %w", err)
			}
			opts.Password = strings.TrimRight(string(b), "\r\n")
		}
		if f.redisTLS {
			opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		limiter = &ratelimit.Shared{Client: redis.NewClient(opts), Prefix: "privateapps:ratelimit", Timeout: 100 * time.Millisecond,
			Local: local, OnError: tokenservice.SharedLimiterErrors(log, 10*time.Second), OnSuccess: tokenservice.SharedLimiterAnswered}
		log.Info("rate-limit counters are shared in Redis", "address", f.redisAddr)
	}
	if err := tokenservice.Feed(context.Background(), mgr.GetCache(), ix, accounts, limiter, f.health); err != nil {
		return err
	}
	engine, err := tokenservice.ParseEngine(f.engine)
	if err != nil {
		return err
	}
	srv := &tokenservice.Server{
		Index: ix, Limiter: limiter, Limits: limits, Accounts: accounts, Usage: usage, Catalogs: catalogs, RouteHeader: f.routeHeader,
		Audiences: commaList(f.audiences), TokenReviewNeedsClientCert: f.clientCA != "",
		Introspection: &tokenservice.IntrospectionLimit{PerSecond: f.introspectionLimit}, Clock: clock.RealClock{}, Log: log,
		Issuer: strings.TrimSuffix(f.issuer, "/"),
	}
	if f.oauthClientsFile != "" {
		if srv.OAuthClients, err = tokenservice.LoadIntrospectionClients(f.oauthClientsFile, func(err error) { log.Error(err, "introspection clients") }); err != nil {
			return err
		}
	}
	if calls != nil {
		srv.Calls = calls
	}
	if err := mgr.Add(&tokenservice.Serving{
		Addr: f.addr, CertFile: f.cert, KeyFile: f.key, Insecure: f.insecure, ClientCAFile: f.clientCA, MaxConnections: f.maxConnections, MaxConnectionsPerSource: f.maxConnectionsPerSource,
		Server: srv, Engine: engine, Cache: mgr.GetCache(), Log: log, Listening: f.health.Listening,
		Ready: func(ctx context.Context) bool {
			if !catalogs.Wait(ctx) {
				return false
			}
			// A restarted replica starts each account's day where status
			// says it is, not at zero.
			if err := tokenservice.SeedAccountDays(ctx, mgr.GetCache(), local, time.Now()); err != nil {
				log.Error(err, "starting today's account counters at zero")
			}
			return true
		},
	}); err != nil {
		return err
	}
	return mgr.Add(&tokenservice.Flusher{
		Client: mgr.GetClient(), Usage: usage, Limits: limits, Accounts: accounts,
		Clock: clock.RealClock{}, Interval: f.flushInterval, Log: log,
	})
}

type insightsFlags struct {
	addr, cert, key, kubeconfig string
	sqlite, sensitive           string
	postgresFile                string
	remoteURL, remoteCA         string
	remoteTokenFile             string
	apiService                  string
	retention, reportWait       time.Duration
	ingestAddr, ingestTokenFile string
	ingestClientCA, syslogAddr  string
	// The sender kinds' secrets (ingest.Senders).
	gatewayTokenFile, auditTokenFile, tokenServiceTokenFile string
}

// setUpInsights opens the call log, keeps its retention and, with
// --insights-bind-address, serves it as insights.privateapps.dev. It
// returns the queue the token service hands its decisions to.
func setUpInsights(mgr ctrl.Manager, f insightsFlags) (*calllog.Queue, error) {
	// The flags' combinations are checked at start (startFlags.problems).
	log := ctrl.Log.WithName("insights")
	store, err := openStore(f)
	if err != nil {
		return nil, err
	}
	queue, err := addCallLogQueue(mgr, store, f)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(&calllog.Retention{Store: store, Keep: f.retention, Clock: clock.RealClock{}, Log: log}); err != nil {
		return nil, err
	}
	metrics.Registry.MustRegister(calllog.GatewayReportsMissing)
	if err := mgr.Add(&calllog.GatewayReports{Store: store, Wait: f.reportWait, Clock: clock.RealClock{}, Log: log}); err != nil {
		return nil, err
	}
	if f.ingestAddr != "" || f.syslogAddr != "" {
		if err := setUpIngest(mgr, f, queue, log); err != nil {
			return nil, err
		}
	}
	if f.addr != "" {
		// The generic API server logs through klog.
		klog.SetLogger(log)
		srv, err := insights.New(insights.Options{Address: f.addr, CertFile: f.cert, KeyFile: f.key,
			CertDir: filepath.Join(os.TempDir(), "privateapp-insights"), Kubeconfig: f.kubeconfig, Store: store,
			Apps: mgr.GetCache(), Retention: f.retention, Log: log})
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(srv); err != nil {
			return nil, err
		}
	}
	return queue, nil
}

// setUpRemoteCallLog sends the token service's decisions to the insights
// component, through a queue, so that its absence costs the checks nothing.
func setUpRemoteCallLog(mgr ctrl.Manager, f insightsFlags) (*calllog.Queue, error) {
	secret, err := readSecretFile("--call-log-token-file", f.remoteTokenFile)
	if err != nil {
		return nil, err
	}
	client, err := ingest.NewClient(f.remoteURL, f.remoteCA, secret)
	if err != nil {
		return nil, err
	}
	return addCallLogQueue(mgr, client, f)
}

// addCallLogQueue puts the queue between this process's token service and
// w (a store, or the insights component).
func addCallLogQueue(mgr ctrl.Manager, w calllog.Writer, f insightsFlags) (*calllog.Queue, error) {
	metrics.Registry.MustRegister(calllog.Collectors()...)
	queue := calllog.NewQueue(w, calllog.QueueOptions{Redactor: calllog.NewRedactor(commaList(f.sensitive)...)}, ctrl.Log.WithName("call-log"))
	return queue, mgr.Add(queue)
}

// readSecretFile reads a secret a flag names, without surrounding white
// space; an empty path is no secret.
func readSecretFile(flagName, path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName, err)
	}
	return bytes.TrimSpace(b), nil
}

func openStore(f insightsFlags) (calllog.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if f.sqlite != "" {
		return sqlite.Open(ctx, f.sqlite)
	}
	dsn, err := readSecretFile("--call-log-postgres-dsn-file", f.postgresFile)
	if err != nil {
		return nil, err
	}
	return postgres.Open(ctx, string(dsn))
}

// setUpIngest starts the endpoints through which gateways, the
// kube-apiserver and token-service replicas report calls.
func setUpIngest(mgr ctrl.Manager, f insightsFlags, queue *calllog.Queue, log logr.Logger) error {
	files := map[ingest.Sender]string{ingest.SenderGateway: f.gatewayTokenFile, ingest.SenderAudit: f.auditTokenFile,
		ingest.SenderTokenService: f.tokenServiceTokenFile}
	secrets := map[ingest.Sender][]byte{}
	for _, kind := range ingest.Senders {
		flagName := "--call-log-" + string(kind) + "-token-file"
		secret, err := readSecretFile(flagName, files[kind])
		if err != nil {
			return err
		}
		if files[kind] != "" && len(secret) == 0 {
			return fmt.Errorf("%s: the file is empty", flagName)
		}
		secrets[kind] = secret
	}
	if err := ingest.CheckSecrets(secrets); err != nil {
		return err
	}
	metrics.Registry.MustRegister(ingest.Collectors()...)
	apps := ingest.CachedApps{Reader: mgr.GetCache()}
	window := ingest.Window{Retention: f.retention}
	if f.ingestAddr != "" {
		// startFlags.problems made sure a sender's secret file or the
		// client CA is named, and an empty file failed above.
		srv := &ingest.Server{Log: queue.Sanitizing(), Apps: apps, Secrets: secrets, Window: window, Logger: log}
		l := &ingest.HTTPS{Addr: f.ingestAddr, CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.ingestClientCA, Handler: srv.Handler(), Log: log}
		if err := l.Listen(); err != nil {
			return err
		}
		if err := mgr.Add(l); err != nil {
			return err
		}
	}
	if f.syslogAddr != "" {
		s := &ingest.Syslog{Addr: f.syslogAddr, Key: secrets[ingest.SenderGateway], Log: queue.Sanitizing(), Apps: apps, Window: window, Logger: log}
		if err := s.Listen(); err != nil {
			return fmt.Errorf("--call-log-syslog-bind-address: %w", err)
		}
		if err := mgr.Add(s); err != nil {
			return err
		}
	}
	return nil
}

// setUpCertRotator makes the certificates once before the manager starts, so
// the webhook server finds its files, and keeps them renewed after.
func setUpCertRotator(mgr ctrl.Manager, namespace, prefix, service, configurations, extraNames, certDir, apiService string) error {
	names := commaList(configurations)
	if len(names) == 0 {
		names = []string{prefix}
	}
	r := &appwebhook.CertRotator{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: namespace, Prefix: prefix,
		WebhookConfigurations: names, CertDir: certDir, Policy: certs.DefaultPolicy,
		ExtraNames: commaList(extraNames), WebhookService: service, APIServices: commaList(apiService),
		Clock: clock.RealClock{}, Interval: time.Minute, Log: ctrl.Log.WithName("certificates"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		if err = r.Sync(ctx); err == nil {
			return mgr.Add(r)
		}
		time.Sleep(2 * time.Second)
	}
	return err
}

// commaList reads a comma-separated flag, ignoring spaces and empty items.
func commaList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// metricsOptions serves the metrics as kubebuilder projects do: with
// secure, over HTTPS behind the kube-apiserver's authentication and
// authorization (a scraper needs a token whose user may get /metrics).
func metricsOptions(addr string, secure bool, certDir string) metricsserver.Options {
	o := metricsserver.Options{BindAddress: addr}
	if secure {
		o.SecureServing = true
		o.FilterProvider = metricsauth.Filter
		o.CertDir = certDir
	}
	return o
}
