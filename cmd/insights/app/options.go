// Package app is the insights component: the call log's store, the
// endpoints through which gateways, the kube-apiserver's audit webhook and
// token-service replicas report calls, and the aggregated API server of
// insights.privateapps.dev (kubectl get calls, recordinsights, apiusages,
// needsattention).
package app

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	genericoptions "k8s.io/apiserver/pkg/server/options"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/command"
	"github.com/privateapps-dev/privateapp-operator/internal/insights"
)

// Options are the insights component's flags: its own, and the serving
// and delegated authentication and authorization options every aggregated
// API server takes from k8s.io/apiserver (--secure-port, --tls-cert-file,
// --authentication-kubeconfig, --requestheader-client-ca-file, ...).
type Options struct {
	command.Options
	Serving        *genericoptions.SecureServingOptionsWithLoopback
	Authentication *genericoptions.DelegatingAuthenticationOptions
	Authorization  *genericoptions.DelegatingAuthorizationOptions

	SQLite, PostgresDSNFile string
	Retention, ReportWait   time.Duration
	SensitiveParams         string

	IngestAddr, IngestClientCA, SyslogAddr string
	// The sender kinds' secrets (ingest.Senders).
	GatewayTokenFile, AuditTokenFile, TokenServiceTokenFile string

	// Flags that are gone, kept to say what replaced them.
	removed map[string]*string
}

// NewOptions are the defaults.
func NewOptions() *Options {
	o := &Options{}
	o.Serving, o.Authentication, o.Authorization = insights.NewServingOptions(filepath.Join(os.TempDir(), "privateapp-insights"))
	return o
}

// replacedBy says, for each flag of the manager's insights mode that is
// gone, what does its work now.
var replacedBy = map[string]string{ //nolint:gosec // G101: flag names and what replaced them, no credential
	"insights-bind-address":      "--secure-port (and --bind-address for the address)",
	"insights-tls-cert":          "--tls-cert-file",
	"insights-tls-key":           "--tls-private-key-file",
	"insights-kubeconfig":        "--authentication-kubeconfig and --authorization-kubeconfig (default: --kubeconfig or $KUBECONFIG, else the in-cluster config)",
	"call-log-ingest-token-file": "--call-log-gateway-token-file, --call-log-audit-token-file and --call-log-token-service-token-file (one secret for every sender let whoever read a gateway's syslog line post audit events and token-service decisions)",
}

// AddFlags adds the insights component's flags to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Options.AddFlags(fs)
	o.Serving.AddFlags(fs)
	o.Authentication.AddFlags(fs)
	o.Authorization.AddFlags(fs)
	fs.StringVar(&o.SQLite, "call-log-sqlite", "", "File of the call log's embedded SQLite database. One process may hold it.")
	fs.StringVar(&o.PostgresDSNFile, "call-log-postgres-dsn-file", "", "File with a PostgreSQL connection string (postgres://user:password@host/db?sslmode=verify-full) for a call log that several replicas share; instead of --call-log-sqlite.")
	fs.DurationVar(&o.Retention, "call-log-retention", calllog.DefaultRetention, "How long the call log keeps calls, in whole UTC days (720h is 30 days).")
	fs.DurationVar(&o.ReportWait, "call-log-gateway-report-wait", calllog.DefaultReportWait, "How long a call allowed for a gateway that reports its calls (gateway=<name> in its check URL) waits for that gateway's access-log line before it shows reason no_gateway_report; longer than the gateway lets a request run.")
	fs.StringVar(&o.SensitiveParams, "call-log-sensitive-params", "", "Comma-separated query parameters whose values the call log redacts, besides the usual credential names (see docs/calllog.md).")
	fs.StringVar(&o.IngestAddr, "call-log-ingest-bind-address", "", "HTTPS address of the call log's ingest endpoints (gateway access logs as JSON lines, the kube-apiserver audit webhook, token-service replicas); serves --tls-cert-file. Empty serves none.")
	fs.StringVar(&o.GatewayTokenFile, "call-log-gateway-token-file", "", "File with the gateways' shared secret (at least 16 characters): Authorization: Bearer on /ingest/v1/access-log, or \"key\" in a syslog line. Gateways' credential only: it cannot post audit events or token-service decisions.")
	fs.StringVar(&o.AuditTokenFile, "call-log-audit-token-file", "", "File with the kube-apiserver audit webhook's shared secret (at least 16 characters), taken only on /ingest/v1/audit.")
	fs.StringVar(&o.TokenServiceTokenFile, "call-log-token-service-token-file", "", "File with the token-service replicas' shared secret (at least 16 characters), taken only on /ingest/v1/calls; they present it with --call-log-token-file.")
	fs.StringVar(&o.IngestClientCA, "call-log-ingest-client-ca", "", "CA file whose client certificates the ingest endpoints accept instead of a shared secret; the certificate's common name is its sender kind (gateway, audit or token-service), and it is taken only at that kind's endpoint.")
	fs.StringVar(&o.SyslogAddr, "call-log-syslog-bind-address", "", "UDP address for gateway access logs over syslog (nginx access_log syslog:server=...); each line carries the shared secret. Empty serves none.")
	o.removed = map[string]*string{}
	for name := range replacedBy {
		o.removed[name] = fs.String(name, "", "Removed: use "+replacedBy[name]+".")
		_ = fs.MarkHidden(name)
	}
}

// Validate lists every mistake of the command line at once, each saying
// what to do. Checks that need a file's content stay where it is read.
func (o *Options) Validate() []error {
	out := o.Options.Validate()
	add := func(format string, a ...any) { out = append(out, fmt.Errorf(format, a...)) }
	for name, v := range o.removed {
		if *v != "" {
			add("--%s is gone from the insights component: use %s", name, replacedBy[name])
		}
	}
	out = append(out, o.Serving.Validate()...)
	out = append(out, o.Authentication.Validate()...)
	out = append(out, o.Authorization.Validate()...)
	if o.Serving.BindPort == 0 {
		add("--secure-port is 0; the insights API is what this component serves: give its port, e.g. %d", insights.DefaultPort)
	}
	if (o.Serving.ServerCert.CertKey.CertFile == "") != (o.Serving.ServerCert.CertKey.KeyFile == "") {
		add("--tls-cert-file and --tls-private-key-file go together")
	}
	if (o.SQLite == "") == (o.PostgresDSNFile == "") {
		add("the call log needs one store: --call-log-sqlite=<file> or --call-log-postgres-dsn-file=<file>")
	}
	if o.Retention < 24*time.Hour {
		add("--call-log-retention is %s; it keeps whole UTC days, so at least 24h", o.Retention)
	}
	if o.ReportWait <= 0 {
		add("--call-log-gateway-report-wait is %s; give how long a gateway's report may take, e.g. 5m", o.ReportWait)
	}
	if o.IngestAddr != "" {
		if o.GatewayTokenFile == "" && o.AuditTokenFile == "" && o.TokenServiceTokenFile == "" && o.IngestClientCA == "" {
			add("--call-log-ingest-bind-address needs a sender's secret (--call-log-gateway-token-file, " +
				"--call-log-audit-token-file, --call-log-token-service-token-file) or --call-log-ingest-client-ca: every sender is authenticated")
		}
		if o.Serving.ServerCert.CertKey.CertFile == "" {
			add("--call-log-ingest-bind-address serves HTTPS with --tls-cert-file and --tls-private-key-file, whose CA the senders trust; give them")
		}
	}
	if o.SyslogAddr != "" && o.GatewayTokenFile == "" {
		add("--call-log-syslog-bind-address needs --call-log-gateway-token-file: gateways put that secret in each line as \"key\"")
	}
	return out
}
