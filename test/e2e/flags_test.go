package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestFlagsFailBeforeStart runs each built command with mistakes and a
// kubeconfig that does not exist: it exits 2 naming every mistake, before
// it reads the kubeconfig or starts anything.
func TestFlagsFailBeforeStart(t *testing.T) {
	bins := commands(t)
	none := "--kubeconfig=" + filepath.Join(t.TempDir(), "none")
	for _, tc := range []struct {
		component string
		args      []string
		says      []string
	}{
		{framework.Manager, []string{"--max-apps-per-namespace=-1", "--max-concurrent-reconciles=0", "--self-signed-certs", "--operator-namespace="},
			[]string{"3 problem(s); nothing was started", "--max-apps-per-namespace is -1", "--max-concurrent-reconciles is 0", "--self-signed-certs needs --operator-namespace"}},
		{framework.TokenService, []string{"--token-service-bind-address=127.0.0.1:0", "--usage-flush-interval=0s"},
			[]string{"2 problem(s); nothing was started", "needs --token-service-tls-cert and --token-service-tls-key", "--usage-flush-interval is 0s"}},
		{framework.Insights, []string{"--call-log-retention=1h", "--insights-bind-address=:8444"},
			[]string{"3 problem(s); nothing was started", "needs one store", "at least 24h", "use --secure-port"}},
		// What the one command of earlier releases took is refused by name.
		{framework.Manager, []string{"--run-controllers=false"}, []string{"unknown flag: --run-controllers"}},
		{framework.TokenService, []string{"--token-service-http-engine=net/http"}, []string{"unknown flag: --token-service-http-engine"}},
	} {
		cmd := exec.Command(bins.Path(tc.component), append([]string{none}, tc.args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%s %q: %v, want exit 2\n%s", tc.component, tc.args, err, out.String())
			continue
		}
		for _, want := range tc.says {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s %q: the output lacks %q:\n%s", tc.component, tc.args, want, out.String())
			}
		}
		if strings.Contains(out.String(), "none") {
			t.Errorf("%s read the kubeconfig before checking its flags:\n%s", tc.component, out.String())
		}
	}
}
