package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// newSecret is the shared secret of the call log's ingest endpoints.
func newSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startNginx runs Debian's nginx in front of a small stand-in for the CRM
// API, if nginx is installed; it returns nil, nil when it is not.
func startNginx(dir, listen, tokenService, syslog, secret string) (*exec.Cmd, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/nginx"); statErr != nil {
			return nil, nil
		}
		bin = "/usr/sbin/nginx"
	}
	// The stand-in API: contact 404 does not exist, everything else does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if strings.HasSuffix(r.URL.Path, "/404") {
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintln(w, `{"status":"error","message":"no such contact"}`)
				return
			}
			fmt.Fprintf(w, "{\"id\":%q,\"app\":%q}\n", r.URL.Path, r.Header.Get("X-PrivateApp-Name"))
		}))
	}()
	// docs/calllog.md's gateway, with its own working directory.
	abs, err := filepath.Abs(filepath.Join(dir, "nginx"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(framework.NginxCallLog, abs, listen, tokenService+"/v1/check?gateway=dev-nginx", ln.Addr().String(), secret, syslog)
	if err := os.WriteFile(filepath.Join(abs, "nginx.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", abs, "-c", filepath.Join(abs, "nginx.conf"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// callThroughNginx makes three calls through nginx with the app's token:
// one the API answers, one it answers 404, and one that creates an
// invoice (a record insight); the log shows each with the upstream's code.
func callThroughNginx(ctx context.Context, c client.Client, listen string, app v1alpha1.PrivateApp) error {
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: app.Status.SecretName}, &s); err != nil {
		return err
	}
	tok := string(s.Data[v1alpha1.SecretTokenKey])
	deadline := time.Now().Add(10 * time.Second)
	for _, call := range []struct{ method, path string }{
		{http.MethodGet, "/crm/v3/objects/contacts/7"}, {http.MethodGet, "/crm/v3/objects/contacts/404"}, {http.MethodPost, invoicesPath},
	} {
		for {
			req, _ := http.NewRequestWithContext(ctx, call.method, "http://"+listen+call.path, strings.NewReader(`{"properties":{}}`))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				fmt.Printf("   %s %s through nginx as %s: %d\n", call.method, call.path, app.Name, resp.StatusCode)
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("nginx did not answer on %s: %w", listen, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}
