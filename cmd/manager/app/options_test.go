package app

import (
	"errors"
	"strings"
	"testing"

	"github.com/privateapps-dev/privateapp-operator/internal/command"
)

// problems parses args as the manager does and returns what Validate says.
func problems(t *testing.T, args ...string) string {
	t.Helper()
	p, err := command.Check(&Options{}, args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return errors.Join(p...).Error()
}

// TestManagerFlagProblems: each mistake is named with what to do, all of
// them at once; the chart's command line has none.
func TestManagerFlagProblems(t *testing.T) {
	chart := []string{"--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8080", "--max-apps-per-namespace=20",
		"--self-signed-certs", "--operator-namespace=privateapp-system", "--cert-name-prefix=privateapp", "--webhook-configurations=privateapp",
		"--insights-apiservice=v1alpha1.insights.privateapps.dev", "--webhook-cert-dir=/tmp/x"}
	if p, err := command.Check(&Options{}, chart...); err != nil || len(p) != 0 {
		t.Fatalf("the chart's command line: %v %q", err, p)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--scope-catalog=crm.read"}, "--scope-catalog was removed"},
		{[]string{"--max-apps-per-namespace=-1"}, "--max-apps-per-namespace is -1"},
		{[]string{"--max-concurrent-reconciles=0"}, "--max-concurrent-reconciles is 0"},
		{[]string{"--leader-elect", "--leader-elect-renew-deadline=20s"}, "must hold"},
		{[]string{"--self-signed-certs", "--operator-namespace="}, "--self-signed-certs needs --operator-namespace"},
		{[]string{"--insights-apiservice=v1alpha1.insights.privateapps.dev"}, "add --self-signed-certs"},
		{[]string{"--kube-api-qps=0"}, "--kube-api-qps"},
	} {
		if got := problems(t, tc.args...); !strings.Contains(got, tc.says) {
			t.Errorf("%q: %q, want a problem saying %q", tc.args, got, tc.says)
		}
	}
	p, _ := command.Check(&Options{}, "--max-apps-per-namespace=-1", "--max-concurrent-reconciles=0", "--scope-catalog=x")
	if len(p) != 3 {
		t.Errorf("three mistakes give %d problems: %q", len(p), p)
	}
	// No flag turns a component on or off here: the token service and the
	// insights API are commands of their own.
	for _, gone := range []string{"--run-controllers=false", "--token-service-bind-address=:8443", "--insights-bind-address=:8444"} {
		if _, err := command.Check(&Options{}, gone); err == nil {
			t.Errorf("the manager takes %s", gone)
		}
	}
}
