package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestConnectionFloodThroughTheBinary runs the built token service
// over TLS with a small connection bound (64, at most 16 per source) and
// fills it from four pod-like source addresses, twice: with connections
// that connect and send nothing, then with connections that made one
// unauthenticated check and are kept alive. A gateway that opens a new
// connection for every check (nginx without upstream keepalive) is still
// answered, each check within the client's 3 s: the token service sheds
// silent and idle connections near its bound instead of waiting for the
// request timeouts or the 90 s idle timeout. The shed connections are
// counted by state.
func TestConnectionFloodThroughTheBinary(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	addr, metricsAddr := freeAddress(t), freeAddress(t)
	certFile, keyFile, pool := selfSignedCert(t, tmp)
	mgr := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--token-service-bind-address=" + addr, "--token-service-tls-cert=" + certFile, "--token-service-tls-key=" + keyFile,
			"--token-service-max-connections=64", "--token-service-max-connections-per-source=16",
			"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false"}}
	mgr.start()
	defer mgr.kill()
	startManager(t, kubeconfig, filepath.Join(tmp, "manager.log"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, tok := createReadyApp(t, ctx, c, "default", "crm", "crm.objects.contacts.read")
	tlsConfig := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	gateway := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true}}
	check := func() (int, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/v1/check", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := gateway.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	waitUntil(t, ctx, "the token service allows the app", func() bool { code, _ := check(); return code == http.StatusOK })

	attacker := tlsConfig.Clone()
	attacker.ServerName = "127.0.0.1"
	shed := func(state string) float64 {
		_, body := httpGet("http://" + metricsAddr + "/metrics")
		for line := range strings.Lines(body) {
			var n float64
			if _, err := fmt.Sscanf(line, "privateapps_token_service_connections_shed_total{state=\""+state+"\"} %g", &n); err == nil {
				return n
			}
		}
		return 0
	}
	for _, hold := range []string{"silent", "idle"} {
		before := shed(hold)
		var held []net.Conn
		for i := 2; i <= 5; i++ {
			from := &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", i))}
			for j := range 16 {
				raw, err := (&net.Dialer{LocalAddr: from, Timeout: 2 * time.Second}).Dial("tcp", addr)
				if err != nil {
					t.Fatalf("%s flood, source %s, connection %d: %v", hold, from, j, err)
				}
				held = append(held, raw)
				if hold == "silent" {
					continue // connected, sends nothing
				}
				conn := tls.Client(raw, attacker)
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(conn, "GET /v1/check HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatalf("idle flood, source %s, connection %d: %v", from, j, err)
				}
				// The answer arrives even when the connection is shed as it
				// falls idle near the bound.
				if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("idle flood, source %s, connection %d: the check is not answered 401: %v", from, j, err)
				}
			}
		}
		for i := range 10 {
			code, err := check()
			if err != nil || code != http.StatusOK {
				t.Fatalf("check %d on a new connection while the house is full of %s connections: %d %v, want 200", i, hold, code, err)
			}
		}
		if after := shed(hold); after <= before {
			t.Errorf("privateapps_token_service_connections_shed_total{state=%q} is %v after the flood, as before it", hold, after)
		}
		for _, c := range held {
			_ = c.Close()
		}
	}
}
