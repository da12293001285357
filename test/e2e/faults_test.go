package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/certs/certstest"
)

// apiProxy stands between a process and the API server, as a load balancer
// would, and can break what passes: nothing, the PrivateApp requests only
// (the replica's watch fails while the API server answers), or everything
// (an outage). Changing the mode cuts the requests under way, watches
// included.
type apiProxy struct {
	mode atomic.Int32 // 0 pass, 1 drop privateapps, 2 drop all
	mu   sync.Mutex
	live map[*http.Request]context.CancelFunc
	url  string
	ca   []byte
}

const (
	proxyPass = iota
	proxyDropPrivateApps
	proxyDropAll
)

func startAPIProxy(t *testing.T, upstream string, tlsConfig *tls.Config) *apiProxy {
	t.Helper()
	target, err := url.Parse(upstream)
	must(t, err)
	p := &apiProxy{live: map[*http.Request]context.CancelFunc{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: false}
	rp.FlushInterval = -1 // stream watches
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch m := p.mode.Load(); {
		case m == proxyDropAll, m == proxyDropPrivateApps && strings.Contains(r.URL.Path, "/privateapps"):
			// A dead peer: the connection closes without an answer.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			http.Error(w, "dropped", http.StatusBadGateway)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		p.mu.Lock()
		p.live[r] = cancel
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			delete(p.live, r)
			p.mu.Unlock()
			cancel()
		}()
		rp.ServeHTTP(w, r.WithContext(ctx))
	})
	dir := t.TempDir()
	ca, err := certstest.NewCA("proxy-ca")
	must(t, err)
	certFile, keyFile, err := ca.WriteCert(dir, "proxy", "localhost", []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	must(t, err)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: handler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}}, ErrorLog: nil}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p.url, p.ca = "https://localhost:"+port, certstest.PEM(ca.Cert)
	return p
}

// set changes the mode and cuts every request under way.
func (p *apiProxy) set(mode int32) {
	p.mode.Store(mode)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cancel := range p.live {
		cancel()
	}
}

func httpGet(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStaleIndexStopsReadiness runs a token service whose API server
// connection passes through a proxy. When its PrivateApp watch fails while
// the API server answers, the index goes stale: the metric says so and,
// past --token-index-stale-bound, readiness fails, so a Service sends
// traffic to replicas that are current. When the API server answers nobody
// (an outage), the replica stays ready: nothing is revoked anywhere then.
// Once the watch is back, it is current and ready again.
func TestStaleIndexStopsReadiness(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	managerBin := build(t, root, "./cmd", filepath.Join(tmp, "manager"))
	env, c, adminKubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The proxy presents the admin's client certificate upstream.
	clientCert, err := tls.X509KeyPair(env.Config.CertData, env.Config.KeyData)
	must(t, err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(env.Config.CAData)
	proxy := startAPIProxy(t, env.Config.Host, &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: roots, MinVersion: tls.VersionTLS12})
	viaProxy := filepath.Join(tmp, "via-proxy.kubeconfig")
	must(t, os.WriteFile(viaProxy, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: proxy
  cluster: {server: %s, certificate-authority-data: %s}
users:
- name: anyone
  user: {}
contexts:
- name: proxy
  context: {cluster: proxy, user: anyone}
current-context: proxy
`, proxy.url, base64.StdEncoding.EncodeToString(proxy.ca))), 0o600))

	controllers := &managerProcess{t: t, bin: managerBin, kubeconfig: adminKubeconfig, log: filepath.Join(tmp, "controllers.log")}
	controllers.start()
	defer controllers.kill()
	addr, probes, metricsAddr := freeAddress(t), freeAddress(t), freeAddress(t)
	tokenService := &managerProcess{t: t, bin: managerBin, kubeconfig: viaProxy, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--run-controllers=false", "--token-service-insecure", "--token-service-bind-address=" + addr,
			"--health-probe-bind-address=" + probes, "--metrics-bind-address=" + metricsAddr, "--token-index-stale-bound=3s"}}
	tokenService.start()
	defer tokenService.kill()

	_, tok := createReadyApp(t, ctx, c, "default", "crm", "crm.objects.contacts.read")
	ready := func() bool { code, _ := httpGet("http://" + probes + "/readyz"); return code == http.StatusOK }
	stale := func() float64 {
		_, body := httpGet("http://" + metricsAddr + "/metrics")
		for line := range strings.Lines(body) {
			var v float64
			if _, err := fmt.Sscanf(line, "privateapps_token_index_stale_seconds %g", &v); err == nil {
				return v
			}
		}
		return -1
	}
	waitUntil(t, ctx, "the token service is ready", ready)
	if code := checkStatus(addr, tok); code != http.StatusOK {
		t.Fatalf("check: %d", code)
	}
	if s := stale(); s != 0 {
		t.Fatalf("a current index reports stale %g", s)
	}

	proxy.set(proxyDropPrivateApps)
	broken := time.Now()
	waitUntil(t, ctx, "readiness fails while the PrivateApp watch is broken and the API server answers", func() bool { return !ready() })
	t.Logf("not ready %s after the watch broke (bound 3s)", time.Since(broken).Round(100*time.Millisecond))
	if s := stale(); s < 3 {
		t.Errorf("privateapps_token_index_stale_seconds %g while stale past the bound", s)
	}
	if code := checkStatus(addr, tok); code != http.StatusOK {
		t.Errorf("a replica that is not ready still answers what it knows: %d", code)
	}

	proxy.set(proxyDropAll)
	waitUntil(t, ctx, "readiness holds while the API server answers nobody", ready)

	proxy.set(proxyPass)
	waitUntil(t, ctx, "the index is current again", func() bool { return stale() == 0 })
	if !ready() {
		t.Error("not ready once the watch is back")
	}
}
