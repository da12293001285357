package app

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/postgres"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/sqlite"
	"github.com/privateapps-dev/privateapp-operator/internal/command"
	"github.com/privateapps-dev/privateapp-operator/internal/controller"
	"github.com/privateapps-dev/privateapp-operator/internal/ingest"
	"github.com/privateapps-dev/privateapp-operator/internal/insights"
)

// Run keeps the call log, takes reports of calls and serves
// insights.privateapps.dev until ctx ends.
func (o *Options) Run(ctx context.Context) error {
	log := ctrl.Log.WithName("insights")
	// The generic API server logs through klog.
	klog.SetLogger(log)
	secrets, err := o.senderSecrets()
	if err != nil {
		return err
	}
	// The delegated authentication and authorization reach the
	// kube-apiserver as the component does, unless told otherwise.
	if kc := command.Kubeconfig(); kc != "" {
		if o.Authentication.RemoteKubeConfigFile == "" {
			o.Authentication.RemoteKubeConfigFile = kc
		}
		if o.Authorization.RemoteKubeConfigFile == "" {
			o.Authorization.RemoteKubeConfigFile = kc
		}
	}
	cfg, err := o.Config()
	if err != nil {
		return err
	}
	opts := o.ManagerOptions()
	opts.Cache = controller.CacheOptions()
	mgr, err := command.NewManager(cfg, opts)
	if err != nil {
		return err
	}
	store, err := o.openStore(ctx)
	if err != nil {
		return err
	}
	queue, err := command.AddCallLogQueue(mgr, store, o.SensitiveParams)
	if err != nil {
		return err
	}
	if err := mgr.Add(&calllog.Retention{Store: store, Keep: o.Retention, Clock: clock.RealClock{}, Log: log}); err != nil {
		return err
	}
	metrics.Registry.MustRegister(calllog.GatewayReportsMissing)
	if err := mgr.Add(&calllog.GatewayReports{Store: store, Wait: o.ReportWait, Clock: clock.RealClock{}, Log: log}); err != nil {
		return err
	}
	if err := o.setUpIngest(mgr, secrets, queue, log); err != nil {
		return err
	}
	srv, err := insights.New(insights.Options{Serving: o.Serving, Authentication: o.Authentication, Authorization: o.Authorization,
		Store: store, Apps: mgr.GetCache(), Retention: o.Retention, Log: log})
	if err != nil {
		return err
	}
	if err := mgr.Add(srv); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting the insights component", "port", o.Serving.BindPort)
	return mgr.Start(ctx)
}

// senderSecrets reads each sender kind's secret; they must differ and be
// long enough (ingest.CheckSecrets).
func (o *Options) senderSecrets() (map[ingest.Sender][]byte, error) {
	files := map[ingest.Sender]string{ingest.SenderGateway: o.GatewayTokenFile, ingest.SenderAudit: o.AuditTokenFile,
		ingest.SenderTokenService: o.TokenServiceTokenFile}
	secrets := map[ingest.Sender][]byte{}
	for _, kind := range ingest.Senders {
		flagName := "--call-log-" + string(kind) + "-token-file"
		secret, err := command.ReadSecretFile(flagName, files[kind])
		if err != nil {
			return nil, err
		}
		if files[kind] != "" && len(secret) == 0 {
			return nil, fmt.Errorf("%s: the file is empty", flagName)
		}
		secrets[kind] = secret
	}
	return secrets, ingest.CheckSecrets(secrets)
}

func (o *Options) openStore(ctx context.Context) (calllog.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if o.SQLite != "" {
		return sqlite.Open(ctx, o.SQLite)
	}
	dsn, err := command.ReadSecretFile("--call-log-postgres-dsn-file", o.PostgresDSNFile)
	if err != nil {
		return nil, err
	}
	return postgres.Open(ctx, string(dsn))
}

// setUpIngest starts the endpoints through which gateways, the
// kube-apiserver and token-service replicas report calls.
func (o *Options) setUpIngest(mgr ctrl.Manager, secrets map[ingest.Sender][]byte, queue *calllog.Queue, log logr.Logger) error {
	if o.IngestAddr == "" && o.SyslogAddr == "" {
		return nil
	}
	metrics.Registry.MustRegister(ingest.Collectors()...)
	apps := ingest.CachedApps{Reader: mgr.GetCache()}
	window := ingest.Window{Retention: o.Retention}
	if o.IngestAddr != "" {
		srv := &ingest.Server{Log: queue.Sanitizing(), Apps: apps, Secrets: secrets, Window: window, Logger: log}
		l := &ingest.HTTPS{Addr: o.IngestAddr, CertFile: o.Serving.ServerCert.CertKey.CertFile, KeyFile: o.Serving.ServerCert.CertKey.KeyFile,
			ClientCAFile: o.IngestClientCA, Handler: srv.Handler(), Log: log}
		if err := l.Listen(); err != nil {
			return err
		}
		if err := mgr.Add(l); err != nil {
			return err
		}
	}
	if o.SyslogAddr != "" {
		s := &ingest.Syslog{Addr: o.SyslogAddr, Key: secrets[ingest.SenderGateway], Log: queue.Sanitizing(), Apps: apps, Window: window, Logger: log}
		if err := s.Listen(); err != nil {
			return fmt.Errorf("--call-log-syslog-bind-address: %w", err)
		}
		if err := mgr.Add(s); err != nil {
			return err
		}
	}
	return nil
}
