// Package app is the manager component: the controllers of PrivateApp,
// TokenRotation, AppNotification and APICatalog, the admission webhooks and
// the operator's own certificates. The token service (cmd/token-service)
// and the insights API (cmd/insights) are components of their own.
package app

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/privateapps-dev/privateapp-operator/internal/command"
	"github.com/privateapps-dev/privateapp-operator/internal/controller"
)

// Options are the manager's flags.
type Options struct {
	command.Options

	LeaderElect                               bool
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	MaxAppsPerNamespace     int
	MaxConcurrentReconciles int
	GracePeriod             time.Duration
	AppMetricsLimit         int
	NotificationsConfig     string
	OperatorNamespace       string
	IDRegistry              string

	WebhookCertDir string
	WebhookPort    int

	SelfSignedCerts       bool
	CertPrefix            string
	WebhookConfigurations string
	WebhookService        string
	WebhookCertExtraNames string
	InsightsAPIService    string

	// ScopeCatalog is a removed flag, kept to say what replaced it.
	ScopeCatalog string
}

// AddFlags adds the manager's flags to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Options.AddFlags(fs)
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader among replicas; needed when running more than one.")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", 12*time.Second, "How long standby replicas wait after the leader's last renewal before taking over (a killed leader is replaced within about this long).")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", 8*time.Second, "How long the leader keeps trying to renew before it gives up leading; less than --leader-elect-lease-duration.")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "How often replicas try to acquire or renew the lease.")
	fs.IntVar(&o.MaxAppsPerNamespace, "max-apps-per-namespace", controller.DefaultMaxAppsPerNamespace, "How many PrivateApps in one namespace may hold tokens; the rest wait for a slot.")
	fs.DurationVar(&o.GracePeriod, "secret-repair-grace-period", controller.DefaultGracePeriod, "How long the previous token stays valid after a token Secret is deleted or edited out of band.")
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", 4, "How many PrivateApps are reconciled in parallel.")
	fs.IntVar(&o.AppMetricsLimit, "app-metrics-limit", controller.DefaultAppMetricsLimit, "How many apps get metrics series of their own (up to eight each: calls, refusals, token times, state); past it, apps are left out in name order and privateapps_app_metrics_truncated is 1. Negative: none.")
	fs.StringVar(&o.NotificationsConfig, "notifications-config", "", "YAML file with the SMTP server, webhook and directory of AppNotifications (see docs/appnotifications.md); without it notifications are recorded but not sent.")
	fs.StringVar(&o.OperatorNamespace, "operator-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the operator, where the cluster-wide recipients directory, the id registry and the leader-election lease live (default $POD_NAMESPACE).")
	fs.StringVar(&o.IDRegistry, "id-registry-configmap", "privateapp-operator-ids", "ConfigMap in --operator-namespace (namespace default when that is empty) that hands out the numeric hubId, appId and userId HubSpot's API shows; empty gives no numbers (docs/privateapps.md#numeric-ids).")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", "", "Directory with tls.crt and tls.key for the admission webhooks; empty serves none (the controllers still enforce the cap and every rule).")
	fs.IntVar(&o.WebhookPort, "webhook-port", 9443, "Port of the admission webhooks.")
	fs.BoolVar(&o.SelfSignedCerts, "self-signed-certs", false, "Run the operator's own CA: keep <prefix>-ca, <prefix>-webhook-tls and <prefix>-token-service-tls valid in the operator namespace, renewing them before they expire, write the webhook certificate into --webhook-cert-dir and inject the CA into --webhook-configurations.")
	fs.StringVar(&o.CertPrefix, "cert-name-prefix", "privateapp", "Prefix of the Secrets and Services of --self-signed-certs.")
	fs.StringVar(&o.WebhookConfigurations, "webhook-configurations", "", "Comma-separated names of the webhook configurations --self-signed-certs injects its CA into (default: the prefix).")
	fs.StringVar(&o.WebhookService, "webhook-service", "", "Name of the webhook Service whose DNS names --self-signed-certs puts in the webhook certificate (default <prefix>-webhook).")
	fs.StringVar(&o.WebhookCertExtraNames, "webhook-cert-extra-names", "", "Comma-separated extra DNS names or IP addresses for the --self-signed-certs webhook certificate (for an API server that calls the webhooks by URL, as in local development).")
	fs.StringVar(&o.InsightsAPIService, "insights-apiservice", "", "With --self-signed-certs: the insights APIService (v1alpha1.insights.privateapps.dev) to inject the CA into; the operator then also keeps <prefix>-insights-tls valid for the Service <prefix>-insights.")
	fs.StringVar(&o.ScopeCatalog, "scope-catalog", "", "Removed: APICatalog objects say which scopes apps may ask for (docs/apicatalogs.md#migrating-from---scope-catalog).")
}

// Validate lists every mistake of the command line at once, each saying
// what to do. Checks that need a file's content stay where it is read.
func (o *Options) Validate() []error {
	out := o.Options.Validate()
	add := func(format string, a ...any) { out = append(out, fmt.Errorf(format, a...)) }
	if o.ScopeCatalog != "" {
		add("--scope-catalog was removed: an APICatalog now says which scopes apps may ask for, and which scopes each route needs; " +
			"create one with these scopes (docs/apicatalogs.md#migrating-from---scope-catalog shows how) and drop the flag")
	}
	if o.MaxAppsPerNamespace < 0 {
		add("--max-apps-per-namespace is %d; give zero or more", o.MaxAppsPerNamespace)
	}
	if o.MaxConcurrentReconciles < 1 {
		add("--max-concurrent-reconciles is %d; give one or more", o.MaxConcurrentReconciles)
	}
	if o.LeaderElect && (o.RenewDeadline >= o.LeaseDuration || o.RetryPeriod >= o.RenewDeadline || o.RetryPeriod <= 0) {
		add("--leader-elect-retry-period (%s) < --leader-elect-renew-deadline (%s) < --leader-elect-lease-duration (%s) must hold",
			o.RetryPeriod, o.RenewDeadline, o.LeaseDuration)
	}
	if o.SelfSignedCerts && o.OperatorNamespace == "" {
		add("--self-signed-certs needs --operator-namespace (or $POD_NAMESPACE)")
	}
	if o.InsightsAPIService != "" && !o.SelfSignedCerts {
		add("--insights-apiservice names the APIService --self-signed-certs injects its CA into; add --self-signed-certs or drop it")
	}
	return out
}
