package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/command"
	"github.com/privateapps-dev/privateapp-operator/internal/controller"
	"github.com/privateapps-dev/privateapp-operator/internal/ingest"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
)

// Run serves the token service until ctx ends.
func (o *Options) Run(ctx context.Context) error {
	log := ctrl.Log.WithName("token-service")
	// Files first: a broken one fails before anything connects.
	limits, err := tokenservice.LoadLimits(o.LimitsFile)
	if err != nil {
		return err
	}
	var clients *tokenservice.IntrospectionClients
	if o.IntrospectionClients != "" {
		if clients, err = tokenservice.LoadIntrospectionClients(o.IntrospectionClients, func(err error) { log.Error(err, "introspection clients") }); err != nil {
			return err
		}
	}
	cfg, err := o.Config()
	if err != nil {
		return err
	}
	// The token index's health follows its informer's list and watch calls.
	health := &tokenservice.IndexHealth{Clock: clock.RealClock{}, Bound: o.StaleBound, APIServerAnswers: apiServerAnswers(cfg)}
	opts := o.ManagerOptions()
	opts.Cache = controller.CacheOptions()
	opts.Cache.NewInformer = health.NewInformer
	mgr, err := command.NewManager(cfg, opts)
	if err != nil {
		return err
	}

	// Routes are matched against the catalogs, compiled in this process.
	catalogs, err := command.AddCatalogs(ctx, mgr)
	if err != nil {
		return err
	}
	local := ratelimit.New()
	limiter, err := o.limiter(local, log)
	if err != nil {
		return err
	}
	ix, accounts, usage := tokenservice.NewIndex(), tokenservice.NewNamespaceLabels(), tokenservice.NewUsage()
	if err := tokenservice.Feed(ctx, mgr.GetCache(), ix, accounts, limiter, health); err != nil {
		return err
	}
	svc := &tokenservice.Service{
		Index: ix, Limiter: limiter, Limits: limits, Accounts: accounts, Usage: usage, Catalogs: catalogs, RouteHeader: o.RouteHeader,
		Audiences: command.CommaList(o.Audiences), TokenReviewNeedsClientCert: o.ClientCA != "",
		Introspection: &tokenservice.IntrospectionLimit{PerSecond: o.IntrospectionLimit}, Clock: clock.RealClock{}, Log: log,
		Issuer: strings.TrimSuffix(o.Issuer, "/"), OAuthClients: clients,
	}
	if o.CallLogURL != "" {
		if svc.Calls, err = o.callLog(mgr); err != nil {
			return err
		}
	}
	if err := mgr.Add(&tokenservice.Listener{
		Addr: o.Addr, CertFile: o.CertFile, KeyFile: o.KeyFile, Insecure: o.Insecure, ClientCAFile: o.ClientCA,
		MaxConnections: o.MaxConnections, MaxConnectionsPerSource: o.MaxConnectionsPerSource,
		Service: svc, Cache: mgr.GetCache(), Log: log, Listening: health.Listening,
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
	if err := mgr.Add(&tokenservice.Flusher{
		Client: mgr.GetClient(), Usage: usage, Limits: limits, Accounts: accounts,
		Clock: clock.RealClock{}, Interval: o.FlushInterval, Log: log,
	}); err != nil {
		return err
	}
	// Ready once the token service listens (its index synced), and not
	// while its index is stale past the bound (docs/token-service.md).
	health.Export()
	if err := mgr.AddReadyzCheck("token-index", health.Check); err != nil {
		return err
	}
	log.Info("starting the token service", "address", o.Addr)
	return mgr.Start(ctx)
}

// limiter is the replica's own counters, or, with --rate-limit-redis,
// counters every replica shares (the local ones when Redis fails).
func (o *Options) limiter(local *ratelimit.Limiter, log logr.Logger) (ratelimit.Taker, error) {
	if o.RedisAddr == "" {
		return local, nil
	}
	opts := &redis.Options{Addr: o.RedisAddr, DialTimeout: time.Second, ReadTimeout: 100 * time.Millisecond,
		WriteTimeout: 100 * time.Millisecond, PoolSize: 64}
	if o.RedisPasswordFile != "" {
		// Only the line end is dropped: a password may begin or end with
		// spaces.
		b, err := os.ReadFile(o.RedisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--rate-limit-redis-password-file: %w", err)
		}
		opts.Password = strings.TrimRight(string(b), "\r\n")
	}
	if o.RedisTLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	log.Info("rate-limit counters are shared in Redis", "address", o.RedisAddr)
	return &ratelimit.Shared{Client: redis.NewClient(opts), Prefix: "privateapps:ratelimit", Timeout: 100 * time.Millisecond,
		Local: local, OnError: tokenservice.SharedLimiterErrors(log, 10*time.Second), OnSuccess: tokenservice.SharedLimiterAnswered}, nil
}

// callLog sends the decisions to the insights component through a queue,
// so that its absence costs the checks nothing.
func (o *Options) callLog(mgr ctrl.Manager) (*calllog.Queue, error) {
	secret, err := command.ReadSecretFile("--call-log-token-file", o.CallLogTokenFile)
	if err != nil {
		return nil, err
	}
	if len(secret) == 0 {
		return nil, fmt.Errorf("--call-log-token-file: the file is empty")
	}
	client, err := ingest.NewClient(o.CallLogURL, o.CallLogCA, secret)
	if err != nil {
		return nil, err
	}
	return command.AddCallLogQueue(mgr, client, o.SensitiveParams)
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
