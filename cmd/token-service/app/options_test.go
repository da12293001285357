package app

import (
	"errors"
	"strings"
	"testing"

	"github.com/privateapps-dev/privateapp-operator/internal/command"
)

func problems(t *testing.T, args ...string) string {
	t.Helper()
	p, err := command.Check(&Options{}, args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return errors.Join(p...).Error()
}

// TestTokenServiceFlagProblems: each mistake is named with what to do,
// all of them at once; the chart's command line has none.
func TestTokenServiceFlagProblems(t *testing.T) {
	tls := []string{"--token-service-tls-cert=tls.crt", "--token-service-tls-key=tls.key"}
	chart := append([]string{"--token-service-bind-address=:8443", "--usage-flush-interval=30s", "--introspection-rate-limit=50",
		"--call-log-url=https://privateapp-insights.privateapp-system.svc:8445", "--call-log-ca-file=ca.crt", "--call-log-token-file=secret"}, tls...)
	if p, err := command.Check(&Options{}, chart...); err != nil || len(p) != 0 {
		t.Fatalf("the chart's command line: %v %q", err, p)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--token-service-tls-cert=tls.crt"}, "needs --token-service-tls-cert and --token-service-tls-key"},
		{append([]string{"--token-service-insecure"}, tls...), "--token-service-insecure serves plain HTTP"},
		{[]string{"--token-service-insecure", "--token-review-client-ca=ca.crt"}, "--token-review-client-ca needs TLS"},
		{[]string{"--token-service-insecure", "--token-service-bind-address="}, "--token-service-bind-address is empty"},
		{[]string{"--token-service-insecure", "--token-service-issuer=https://a.example?x=1"}, "--token-service-issuer"},
		{[]string{"--token-service-insecure", "--usage-flush-interval=0s"}, "--usage-flush-interval is 0s"},
		{[]string{"--token-service-insecure", "--token-service-max-connections=-1"}, "zero (no bound) or more"},
		{[]string{"--token-service-insecure", "--call-log-url=http://insights:8445", "--call-log-token-file=s"}, "must be the https URL"},
		{[]string{"--token-service-insecure", "--call-log-url=https://insights:8445"}, "needs --call-log-token-file"},
		{[]string{"--token-service-insecure", "--call-log-token-file=s"}, "are for --call-log-url"},
	} {
		if got := problems(t, tc.args...); !strings.Contains(got, tc.says) {
			t.Errorf("%q: %q, want a problem saying %q", tc.args, got, tc.says)
		}
	}
	p, _ := command.Check(&Options{}, "--usage-flush-interval=0s", "--token-service-issuer=ftp://x", "--call-log-token-file=s")
	if len(p) != 4 { // and no TLS
		t.Errorf("four mistakes give %d problems: %q", len(p), p)
	}
	for _, gone := range []string{"--run-controllers=false", "--token-service-http-engine=net/http", "--call-log-sqlite=calls.db", "--leader-elect"} {
		if _, err := command.Check(&Options{}, gone); err == nil {
			t.Errorf("the token service takes %s", gone)
		}
	}
}
