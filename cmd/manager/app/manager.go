package app

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/privateapps-dev/privateapp-operator/internal/catalogfeed"
	"github.com/privateapps-dev/privateapp-operator/internal/certs"
	"github.com/privateapps-dev/privateapp-operator/internal/command"
	"github.com/privateapps-dev/privateapp-operator/internal/controller"
	"github.com/privateapps-dev/privateapp-operator/internal/hubid"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
	appwebhook "github.com/privateapps-dev/privateapp-operator/internal/webhook"
)

// eventSource names the operator in the Events it records.
const eventSource = "privateapp-operator"

// Run runs the controllers (and, with --webhook-cert-dir, the admission
// webhooks) until ctx ends.
func (o *Options) Run(ctx context.Context) error {
	log := ctrl.Log.WithName("setup")
	// A broken notifications file fails before anything connects.
	channels, err := notify.LoadConfig(o.NotificationsConfig, o.OperatorNamespace)
	if err != nil {
		return fmt.Errorf("--notifications-config: %w", err)
	}
	cfg, err := o.Config()
	if err != nil {
		return err
	}
	opts := o.ManagerOptions()
	opts.LeaderElection = o.LeaderElect
	opts.LeaderElectionID = "privateapp-operator.privateapps.dev"
	opts.LeaderElectionNamespace = o.OperatorNamespace // empty: the pod's own namespace
	opts.LeaseDuration, opts.RenewDeadline, opts.RetryPeriod = &o.LeaseDuration, &o.RenewDeadline, &o.RetryPeriod
	opts.Cache = controller.CacheOptions()
	opts.WebhookServer = webhook.NewServer(webhook.Options{Port: o.WebhookPort, CertDir: o.WebhookCertDir})
	mgr, err := command.NewManager(cfg, opts)
	if err != nil {
		return err
	}

	// The webhooks and the controller check scopes against the catalogs.
	catalogs, err := command.AddCatalogs(ctx, mgr)
	if err != nil {
		return err
	}
	recorder := mgr.GetEventRecorder(eventSource)
	if err := (&controller.PrivateAppReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                recorder,
		MaxAppsPerNamespace:     o.MaxAppsPerNamespace,
		GracePeriod:             o.GracePeriod,
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
		Catalogs:                catalogs,
		IDs:                     o.idRegistry(mgr),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the PrivateApp controller: %w", err)
	}
	if err := (&controller.APICatalogReconciler{Client: mgr.GetClient(), Recorder: recorder}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the APICatalog controller: %w", err)
	}
	if err := (&controller.TokenRotationReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the TokenRotation controller: %w", err)
	}
	if err := (&controller.AppNotificationReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                recorder,
		Channels:                channels,
		MaxConcurrentReconciles: 2,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AppNotification controller: %w", err)
	}
	if o.WebhookCertDir != "" {
		if err := o.setUpWebhooks(mgr, catalogs, channels); err != nil {
			return err
		}
	}
	if o.SelfSignedCerts {
		if err := o.setUpCertRotator(ctx, mgr); err != nil {
			return fmt.Errorf("the operator's certificates: %w", err)
		}
	}
	// The apps as their status says, once per cluster (not per
	// token-service replica), and the notification deliveries.
	metrics.Registry.MustRegister(controller.AppsByConnection{Reader: mgr.GetCache(), Limit: o.AppMetricsLimit})
	metrics.Registry.MustRegister(controller.NotificationCollectors()...)
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting the manager", "maxAppsPerNamespace", o.MaxAppsPerNamespace)
	return mgr.Start(ctx)
}

func (o *Options) setUpWebhooks(mgr ctrl.Manager, catalogs *catalogfeed.Feed, channels *notify.Channels) error {
	reader := mgr.GetAPIReader()
	for name, w := range map[string]interface{ SetupWithManager(ctrl.Manager) error }{
		"PrivateApp":      &appwebhook.PrivateAppWebhook{Reader: reader, MaxAppsPerNamespace: o.MaxAppsPerNamespace, Catalogs: catalogs},
		"APICatalog":      &appwebhook.APICatalogWebhook{Reader: reader},
		"TokenRotation":   &appwebhook.TokenRotationWebhook{Reader: reader},
		"AppNotification": &appwebhook.AppNotificationWebhook{Reader: reader, Channels: channels},
	} {
		if err := w.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the %s webhook: %w", name, err)
		}
	}
	return nil
}

// idRegistry is the registry of HubSpot-style ids, or nil when
// --id-registry-configmap is empty.
func (o *Options) idRegistry(mgr ctrl.Manager) controller.IDRegistry {
	if o.IDRegistry == "" {
		return nil
	}
	namespace := o.OperatorNamespace
	if namespace == "" {
		namespace = metav1.NamespaceDefault // out of the cluster (make dev, the tests)
	}
	return &hubid.Registry{Reader: mgr.GetAPIReader(), Writer: mgr.GetClient(), Key: types.NamespacedName{Namespace: namespace, Name: o.IDRegistry},
		InUse: func(ctx context.Context) (int64, error) { return hubid.LargestInUse(ctx, mgr.GetAPIReader()) }}
}

// setUpCertRotator makes the certificates once before the manager starts, so
// the webhook server finds its files, and keeps them renewed after.
func (o *Options) setUpCertRotator(ctx context.Context, mgr ctrl.Manager) error {
	names := command.CommaList(o.WebhookConfigurations)
	if len(names) == 0 {
		names = []string{o.CertPrefix}
	}
	r := &appwebhook.CertRotator{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: o.OperatorNamespace, Prefix: o.CertPrefix,
		WebhookConfigurations: names, CertDir: o.WebhookCertDir, Policy: certs.DefaultPolicy,
		ExtraNames: command.CommaList(o.WebhookCertExtraNames), WebhookService: o.WebhookService, APIServices: command.CommaList(o.InsightsAPIService),
		Clock: clock.RealClock{}, Interval: time.Minute, Log: ctrl.Log.WithName("certificates"),
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		if err = r.Sync(ctx); err == nil {
			return mgr.Add(r)
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	return err
}
