package app

import (
	"errors"
	"strings"
	"testing"

	"github.com/privateapps-dev/privateapp-operator/internal/command"
)

func problems(t *testing.T, args ...string) string {
	t.Helper()
	p, err := command.Check(NewOptions(), args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return errors.Join(p...).Error()
}

// TestInsightsFlagProblems: each mistake is named with what to do, all of
// them at once; the chart's command line has none; the standard flags of
// an aggregated API server are there.
func TestInsightsFlagProblems(t *testing.T) {
	tls := []string{"--tls-cert-file=tls.crt", "--tls-private-key-file=tls.key"}
	chart := append([]string{"--secure-port=8444", "--call-log-sqlite=/var/lib/privateapp-insights/calls.db",
		"--call-log-ingest-bind-address=:8445", "--call-log-syslog-bind-address=:5514", "--call-log-gateway-token-file=g",
		"--call-log-audit-token-file=a", "--call-log-token-service-token-file=t", "--authentication-kubeconfig=kc",
		"--requestheader-allowed-names=front-proxy-client", "--authorization-always-allow-paths=/healthz"}, tls...)
	if p, err := command.Check(NewOptions(), chart...); err != nil || len(p) != 0 {
		t.Fatalf("the chart's command line: %v %q", err, p)
	}
	sqlite := "--call-log-sqlite=calls.db"
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "needs one store"},
		{[]string{sqlite, "--call-log-postgres-dsn-file=dsn"}, "needs one store"},
		{[]string{sqlite, "--call-log-retention=1h"}, "at least 24h"},
		{[]string{sqlite, "--call-log-gateway-report-wait=0s"}, "--call-log-gateway-report-wait is 0s"},
		{append([]string{sqlite, "--call-log-ingest-bind-address=:8445"}, tls...), "needs a sender's secret"},
		{[]string{sqlite, "--call-log-ingest-bind-address=:8445", "--call-log-gateway-token-file=g"}, "serves HTTPS with --tls-cert-file"},
		{[]string{sqlite, "--call-log-syslog-bind-address=:5514"}, "needs --call-log-gateway-token-file"},
		{[]string{sqlite, "--tls-cert-file=tls.crt"}, "go together"},
		{[]string{sqlite, "--secure-port=0"}, "--secure-port is 0"},
		{[]string{sqlite, "--insights-bind-address=:8444"}, "use --secure-port"},
		{[]string{sqlite, "--insights-tls-cert=tls.crt"}, "use --tls-cert-file"},
		{[]string{sqlite, "--call-log-ingest-token-file=s"}, "--call-log-gateway-token-file"},
	} {
		if got := problems(t, tc.args...); !strings.Contains(got, tc.says) {
			t.Errorf("%q: %q, want a problem saying %q", tc.args, got, tc.says)
		}
	}
	p, _ := command.Check(NewOptions(), "--call-log-retention=1h", "--call-log-syslog-bind-address=:5514")
	if len(p) != 3 { // and no store
		t.Errorf("three mistakes give %d problems: %q", len(p), p)
	}
	for _, gone := range []string{"--run-controllers=false", "--token-service-bind-address=", "--leader-elect"} {
		if _, err := command.Check(NewOptions(), gone); err == nil {
			t.Errorf("the insights component takes %s", gone)
		}
	}
}
