package main

import (
	"strings"
	"testing"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// valid is the chart's controller and token service in one process, as
// kustomize runs it.
func valid() startFlags {
	return startFlags{runControllers: true, maxApps: 20, concurrency: 4,
		leaseDuration: 12 * time.Second, renewDeadline: 8 * time.Second, retryPeriod: 2 * time.Second,
		ts:  tokenServiceFlags{addr: ":8443", cert: "tls.crt", key: "tls.key", engine: "fasthttp", flushInterval: 30 * time.Second},
		ins: insightsFlags{retention: calllog.DefaultRetention, reportWait: calllog.DefaultReportWait}}
}

// TestStartFlagProblems: each mistake is named with what to do, and all
// of them at once.
func TestStartFlagProblems(t *testing.T) {
	if p := valid().problems(); len(p) != 0 {
		t.Fatalf("a valid command line has problems: %q", p)
	}
	for _, tc := range []struct {
		name    string
		mistake func(*startFlags)
		says    string
	}{
		{"nothing to run", func(f *startFlags) { f.runControllers, f.ts.addr = false, "" }, "leaves nothing to run"},
		{"a removed flag", func(f *startFlags) { f.scopeCatalog = "crm.read" }, "--scope-catalog was removed"},
		{"a negative cap", func(f *startFlags) { f.maxApps = -1 }, "--max-apps-per-namespace is -1"},
		{"no TLS for the token service", func(f *startFlags) { f.ts.key = "" }, "needs --token-service-tls-cert and --token-service-tls-key"},
		{"TLS and insecure", func(f *startFlags) { f.ts.insecure = true }, "--token-service-insecure serves plain HTTP"},
		{"client CA without TLS", func(f *startFlags) { f.ts.insecure, f.ts.cert, f.ts.key, f.ts.clientCA = true, "", "", "ca.crt" }, "--token-review-client-ca needs TLS"},
		{"an unknown engine", func(f *startFlags) { f.ts.engine = "h3" }, "h3"},
		{"an issuer with a query", func(f *startFlags) { f.ts.issuer = "https://a.example?x=1" }, "--token-service-issuer"},
		{"leader election out of order", func(f *startFlags) { f.leaderElect, f.renewDeadline = true, 20*time.Second }, "must hold"},
		{"self-signed without a namespace", func(f *startFlags) { f.selfSignedCerts = true }, "--self-signed-certs needs --operator-namespace"},
		{"a call log without a store", func(f *startFlags) { f.ins.addr = ":8444" }, "needs one store"},
		{"two stores", func(f *startFlags) { f.ins.sqlite, f.ins.postgresFile = "a.db", "dsn" }, "needs one store"},
		{"retention under a day", func(f *startFlags) { f.ins.sqlite, f.ins.retention = "a.db", time.Hour }, "at least 24h"},
		{"ingest without a secret", func(f *startFlags) { f.ins.sqlite, f.ins.ingestAddr = "a.db", ":8445" }, "needs a sender's secret"},
		{"syslog without the gateways' secret", func(f *startFlags) { f.ins.sqlite, f.ins.syslogAddr = "a.db", ":5514" }, "needs --call-log-gateway-token-file"},
		{"the old shared secret", func(f *startFlags) { f.ins.ingestTokenFile = "secret" }, "--call-log-ingest-token-file is gone"},
		{"a remote log and a store", func(f *startFlags) { f.ins.remoteURL, f.ins.sqlite = "https://insights:8445", "a.db" }, "does not go with a store"},
		{"half an insights key pair", func(f *startFlags) { f.ins.cert = "tls.crt" }, "go together"},
	} {
		f := valid()
		tc.mistake(&f)
		p := f.problems()
		if len(p) == 0 || !strings.Contains(strings.Join(p, "\n"), tc.says) {
			t.Errorf("%s: %q, want a problem saying %q", tc.name, p, tc.says)
		}
	}
	all := valid()
	all.maxApps, all.ts.key, all.ins.addr = -1, "", ":8444"
	if p := all.problems(); len(p) != 3 {
		t.Errorf("three mistakes give %d problems: %q", len(p), p)
	}
}
