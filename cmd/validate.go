package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
)

// startFlags are the flags whose combinations are checked before anything
// starts.
type startFlags struct {
	runControllers, selfSignedCerts           bool
	scopeCatalog, operatorNamespace           string
	maxApps, concurrency                      int
	leaderElect                               bool
	leaseDuration, renewDeadline, retryPeriod time.Duration
	ts                                        tokenServiceFlags
	ins                                       insightsFlags
}

// problems lists every mistake of the command line at once, each saying
// what to do, so that a bad flag fails before the manager connects to
// anything (and not, as a missing TLS flag once did, after start-up).
// Checks that need a file's content stay where the file is read.
func (f startFlags) problems() []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	ts, ins := f.ts, f.ins
	callLog := ins.sqlite != "" || ins.postgresFile != "" || ins.addr != "" || ins.ingestAddr != "" || ins.syslogAddr != ""

	if !f.runControllers && ts.addr == "" && ins.addr == "" && ins.ingestAddr == "" && ins.syslogAddr == "" {
		add("--run-controllers=false with --token-service-bind-address and every --insights/--call-log address empty leaves nothing to run")
	}
	if f.scopeCatalog != "" {
		add("--scope-catalog was removed: an APICatalog now says which scopes apps may ask for, and which scopes each route needs; " +
			"create one with these scopes (docs/apicatalogs.md#migrating-from---scope-catalog shows how) and drop the flag")
	}
	if f.maxApps < 0 {
		add("--max-apps-per-namespace is %d; give zero or more", f.maxApps)
	}
	if f.concurrency < 1 {
		add("--max-concurrent-reconciles is %d; give one or more", f.concurrency)
	}
	if f.leaderElect && (f.renewDeadline >= f.leaseDuration || f.retryPeriod >= f.renewDeadline || f.retryPeriod <= 0) {
		add("--leader-elect-retry-period (%s) < --leader-elect-renew-deadline (%s) < --leader-elect-lease-duration (%s) must hold",
			f.retryPeriod, f.renewDeadline, f.leaseDuration)
	}
	if f.selfSignedCerts && f.runControllers && f.operatorNamespace == "" {
		add("--self-signed-certs needs --operator-namespace (or $POD_NAMESPACE)")
	}

	if ts.addr != "" {
		switch {
		case !ts.insecure && (ts.cert == "" || ts.key == ""):
			add("the token service needs --token-service-tls-cert and --token-service-tls-key, or --token-service-insecure to serve plain HTTP for local use")
		case ts.insecure && (ts.cert != "" || ts.key != ""):
			add("--token-service-insecure serves plain HTTP: drop it, or drop --token-service-tls-cert and --token-service-tls-key")
		}
		if ts.insecure && ts.clientCA != "" {
			add("--token-review-client-ca needs TLS: client certificates cannot be verified with --token-service-insecure")
		}
		if _, err := tokenservice.ParseEngine(ts.engine); err != nil {
			add("%v", err)
		}
		if issuer := strings.TrimSuffix(ts.issuer, "/"); issuer != "" {
			if u, err := url.Parse(issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				add("--token-service-issuer %q must be an https URL without query or fragment, such as https://privateapps-token-service.privateapps-system.svc:8443", ts.issuer)
			}
		}
		if ts.flushInterval <= 0 {
			add("--usage-flush-interval is %s; give how often call counts are written, e.g. 30s", ts.flushInterval)
		}
		if ts.maxConnections < 0 || ts.maxConnectionsPerSource < 0 || ts.introspectionLimit < 0 {
			add("--token-service-max-connections, --token-service-max-connections-per-source and --introspection-rate-limit are zero (no bound) or more")
		}
	}

	if (ins.cert == "") != (ins.key == "") {
		add("--insights-tls-cert and --insights-tls-key go together")
	}
	if ins.ingestTokenFile != "" {
		add("--call-log-ingest-token-file is gone: one secret for every sender let whoever read a gateway's " +
			"syslog line post audit events and token-service decisions; give each sender kind its own secret with " +
			"--call-log-gateway-token-file, --call-log-audit-token-file and --call-log-token-service-token-file")
	}
	if ins.remoteURL != "" {
		if callLog {
			add("--call-log-url sends calls to another process's call log; it does not go with a store or insights addresses of this process")
		}
		if ts.addr == "" {
			add("--call-log-url sends the token service's decisions; it needs --token-service-bind-address")
		}
		return out
	}
	if !callLog {
		return out
	}
	if (ins.sqlite == "") == (ins.postgresFile == "") {
		add("the call log (--insights-bind-address, --call-log-ingest-bind-address, --call-log-syslog-bind-address) needs one store: " +
			"--call-log-sqlite=<file> or --call-log-postgres-dsn-file=<file>")
	}
	if ins.retention < 24*time.Hour {
		add("--call-log-retention is %s; it keeps whole UTC days, so at least 24h", ins.retention)
	}
	if ins.reportWait <= 0 {
		add("--call-log-gateway-report-wait is %s; give how long a gateway's report may take, e.g. 5m", ins.reportWait)
	}
	if ins.ingestAddr != "" && ins.gatewayTokenFile == "" && ins.auditTokenFile == "" && ins.tokenServiceTokenFile == "" && ins.ingestClientCA == "" {
		add("--call-log-ingest-bind-address needs a sender's secret (--call-log-gateway-token-file, " +
			"--call-log-audit-token-file, --call-log-token-service-token-file) or --call-log-ingest-client-ca: every sender is authenticated")
	}
	if ins.syslogAddr != "" && ins.gatewayTokenFile == "" {
		add("--call-log-syslog-bind-address needs --call-log-gateway-token-file: gateways put that secret in each line as \"key\"")
	}
	return out
}
