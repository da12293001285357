package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestManagerFlagsFailBeforeStart runs the built manager with three
// mistakes and a kubeconfig that does not exist: it exits 2 naming all
// three, before it reads the kubeconfig or starts anything.
func TestManagerFlagsFailBeforeStart(t *testing.T) {
	tmp := t.TempDir()
	manager := build(t, repoRoot(t), "./cmd", filepath.Join(tmp, "manager"))
	cmd := exec.Command(manager, "--kubeconfig="+filepath.Join(tmp, "none"), "--max-apps-per-namespace=-1",
		"--token-service-bind-address=127.0.0.1:0", "--insights-bind-address=127.0.0.1:0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("the manager with three mistakes: %v, want exit 2\n%s", err, out.String())
	}
	for _, want := range []string{"3 problem(s); nothing was started", "--max-apps-per-namespace is -1",
		"needs --token-service-tls-cert and --token-service-tls-key", "the call log (--insights-bind-address"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the manager's output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "kubeconfig") || strings.Contains(out.String(), "none") {
		t.Errorf("the manager read the kubeconfig before checking its flags:\n%s", out.String())
	}
}
