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

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/internal/certs/certstest"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
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

// proxiedTokenService is a control plane, the controllers, and a token
// service whose API server connection passes through an apiProxy.
type proxiedTokenService struct {
	proxy                 *apiProxy
	c                     client.Client
	addr, probes, metrics string
}

func startProxiedTokenService(t *testing.T, ctx context.Context, extraArgs ...string) *proxiedTokenService {
	t.Helper()
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	env, c, adminKubeconfig := startControlPlane(t, root, tmp)

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

	controllers := &componentProcess{t: t, bin: bins.Path(framework.Manager), kubeconfig: adminKubeconfig, log: filepath.Join(tmp, "controllers.log")}
	controllers.start()
	t.Cleanup(controllers.kill)
	p := &proxiedTokenService{proxy: proxy, c: c, addr: freeAddress(t), probes: freeAddress(t), metrics: freeAddress(t)}
	tokenService := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: viaProxy, log: filepath.Join(tmp, "token-service.log"),
		args: append([]string{"--token-service-insecure", "--token-service-bind-address=" + p.addr,
			"--health-probe-bind-address=" + p.probes, "--metrics-bind-address=" + p.metrics, "--metrics-secure=false"}, extraArgs...)}
	tokenService.start()
	t.Cleanup(tokenService.kill)
	return p
}

func (p *proxiedTokenService) ready() bool {
	code, _ := httpGet("http://" + p.probes + "/readyz")
	return code == http.StatusOK
}

// stale reads privateapps_token_index_stale_seconds (-1 when absent).
func (p *proxiedTokenService) stale() float64 {
	_, body := httpGet("http://" + p.metrics + "/metrics")
	for line := range strings.Lines(body) {
		var v float64
		if _, err := fmt.Sscanf(line, "privateapps_token_index_stale_seconds %g", &v); err == nil {
			return v
		}
	}
	return -1
}

// TestStaleIndexStopsReadiness runs a token service whose API server
// connection passes through a proxy. When its PrivateApp watch fails while
// the API server answers, the index goes stale: the metric says so and,
// past --token-index-stale-bound, readiness fails, so a Service sends
// traffic to replicas that are current. When the API server answers nobody
// (an outage), the replica stays ready: nothing is revoked anywhere then.
// Once the watch is back, it is current and ready again.
func TestStaleIndexStopsReadiness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := startProxiedTokenService(t, ctx, "--token-index-stale-bound=3s")
	_, tok := createReadyApp(t, ctx, p.c, "default", "crm", "crm.objects.contacts.read")
	waitUntil(t, ctx, "the token service is ready", p.ready)
	if code := checkStatus(p.addr, tok); code != http.StatusOK {
		t.Fatalf("check: %d", code)
	}
	if s := p.stale(); s != 0 {
		t.Fatalf("a current index reports stale %g", s)
	}

	p.proxy.set(proxyDropPrivateApps)
	broken := time.Now()
	waitUntil(t, ctx, "readiness fails while the PrivateApp watch is broken and the API server answers", func() bool { return !p.ready() })
	t.Logf("not ready %s after the watch broke (bound 3s)", time.Since(broken).Round(100*time.Millisecond))
	if s := p.stale(); s < 3 {
		t.Errorf("privateapps_token_index_stale_seconds %g while stale past the bound", s)
	}
	if code := checkStatus(p.addr, tok); code != http.StatusOK {
		t.Errorf("a replica that is not ready still answers what it knows: %d", code)
	}

	p.proxy.set(proxyDropAll)
	waitUntil(t, ctx, "readiness holds while the API server answers nobody", p.ready)

	p.proxy.set(proxyPass)
	waitUntil(t, ctx, "the index is current again", func() bool { return p.stale() == 0 })
	if !p.ready() {
		t.Error("not ready once the watch is back")
	}
}

// TestAPIServerOutage: calls flow through an outage of the API server (as
// the token service sees it) and back. A revocation made just before the
// outage holds through it; valid tokens keep working; and once the API
// server is back, a revocation takes effect at once, with no accept after
// the first refusal.
func TestAPIServerOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := startProxiedTokenService(t, ctx)
	app, tok := createReadyApp(t, ctx, p.c, "default", "crm", "crm.objects.contacts.read")
	revoked, revokedTok := createReadyApp(t, ctx, p.c, "default", "legacy", "crm.objects.contacts.read")
	waitUntil(t, ctx, "the token service accepts both tokens", func() bool {
		return checkStatus(p.addr, tok) == http.StatusOK && checkStatus(p.addr, revokedTok) == http.StatusOK
	})

	// Calls flow the whole time, within the app's rate limit.
	type answer struct {
		at   time.Time
		code int
	}
	var mu sync.Mutex
	var answers []answer
	stop := make(chan struct{})
	flowing := make(chan struct{})
	go func() {
		defer close(flowing)
		for {
			select {
			case <-stop:
				return
			default:
			}
			code := checkStatus(p.addr, tok)
			mu.Lock()
			answers = append(answers, answer{time.Now(), code})
			mu.Unlock()
			// About 65 calls in 10 s: under the free edition's 100.
			time.Sleep(150 * time.Millisecond)
		}
	}()

	must(t, p.c.Delete(ctx, revoked))
	before := time.Now()
	waitUntil(t, ctx, "the revocation reaches the token service", func() bool { return checkStatus(p.addr, revokedTok) == http.StatusUnauthorized })
	t.Logf("the revocation before the outage took %s", time.Since(before).Round(time.Millisecond))

	p.proxy.set(proxyDropAll)
	outage := time.Now()
	for time.Since(outage) < 5*time.Second {
		if code := checkStatus(p.addr, revokedTok); code != http.StatusUnauthorized {
			t.Fatalf("during the outage the token revoked before it answers %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := p.stale(); s <= 0 {
		t.Errorf("during the outage privateapps_token_index_stale_seconds is %g", s)
	}
	p.proxy.set(proxyPass)
	waitUntil(t, ctx, "the index is current after the outage", func() bool { return p.stale() == 0 })
	back := time.Now()

	must(t, p.c.Delete(ctx, app))
	deleted := time.Now()
	waitUntil(t, ctx, "the revocation after the outage reaches the token service", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(answers) > 0 && answers[len(answers)-1].code == http.StatusUnauthorized
	})
	time.Sleep(time.Second)
	close(stop)
	<-flowing
	if code := checkStatus(p.addr, revokedTok); code != http.StatusUnauthorized {
		t.Errorf("after the outage the token revoked before it answers %d", code)
	}

	var refusedAt time.Time
	for _, a := range answers {
		switch {
		case a.at.Before(deleted) && a.at.After(outage) && a.code != http.StatusOK:
			t.Errorf("a valid token answered %d at %s, during or after the outage (back at %s)", a.code, a.at.Format(time.StampMilli), back.Format(time.StampMilli))
		case !a.at.Before(deleted) && a.code == http.StatusUnauthorized && refusedAt.IsZero():
			refusedAt = a.at
		case !refusedAt.IsZero() && a.code != http.StatusUnauthorized:
			t.Errorf("an accept (%d) at %s after the first refusal at %s", a.code, a.at.Format(time.StampMilli), refusedAt.Format(time.StampMilli))
		}
	}
	t.Logf("%d calls; the revocation after the outage took %s", len(answers), refusedAt.Sub(deleted).Round(time.Millisecond))
	if refusedAt.Sub(deleted) > time.Second {
		t.Errorf("the revocation after the outage took %s, over a second", refusedAt.Sub(deleted))
	}
}
