package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/go-logr/logr"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

func TestNginxAuthRequest(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("this test runs a real nginx: install Debian's nginx-light (.ci/run does)")
	}
	tmp := t.TempDir()

	// The token service, over real HTTP, with two apps: one holds the scope
	// the gateway requires, one does not; limits of 2 calls per 10 seconds.
	ix := tokenservice.NewIndex()
	reader, other := mustToken(t), mustToken(t)
	ix.Set(indexedApp("team-a", "reader", reader, "crm.objects.contacts.read"))
	ix.Set(indexedApp("team-a", "other", other, "crm.objects.deals.read"))
	limits := tokenservice.DefaultLimits()
	limits.Editions["free"] = tokenservice.EditionLimits{PerTenSeconds: 2, PerDay: 1000}
	svc := &tokenservice.Service{Index: ix, Limiter: ratelimit.New(), Limits: limits, Usage: tokenservice.NewUsage(), Clock: clock.RealClock{}}
	tsListener, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	go func() { _ = tokenservice.Serve(serveCtx, tsListener, svc, logr.Discard()) }()
	tsURL := "http://" + tsListener.Addr().String()

	// The upstream echoes the identity nginx passed on, and the Authorization
	// header it must not see.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app=%s/%s authorization=%q", r.Header.Get("X-PrivateApp-Namespace"), r.Header.Get("X-PrivateApp-Name"), r.Header.Get("Authorization"))
	}))
	defer upstream.Close()

	listen := freeAddress(t)
	conf := filepath.Join(tmp, "nginx.conf")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf(framework.NginxGateway, tmp, listen, strings.TrimPrefix(tsURL, "http://"), strings.TrimPrefix(upstream.URL, "http://"), "/v1/check?scope=crm.objects.contacts.read")), 0o600))
	cmd := exec.Command(nginx, "-p", tmp, "-c", conf)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	get := func(tok string) (int, http.Header, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/crm/v3/objects/contacts", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code, _, _ := get(""); code == 0; code, _, _ = get("") {
		if time.Now().After(deadline) {
			t.Fatal("nginx did not start listening")
		}
		time.Sleep(50 * time.Millisecond)
	}

	code, _, body := get(reader.Reveal())
	if code != 200 || body != `app=team-a/reader authorization=""` {
		t.Fatalf("allowed call: %d %q, want 200 with the app's identity and no token upstream", code, body)
	}
	if code, h, _ := get(""); code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: %d %v, want 401 with WWW-Authenticate", code, h)
	}
	if code, _, _ := get(mustToken(t).Reveal()); code != 401 {
		t.Fatalf("unknown token: %d, want 401", code)
	}
	if code, _, _ := get(other.Reveal()); code != 403 {
		t.Fatalf("token without the required scope: %d, want 403", code)
	}
	// reader used 1 of its 2 calls in this window (a window may also have
	// just turned); keep calling until refused, then check the answer.
	var h http.Header
	for range 4 {
		if code, h, _ = get(reader.Reveal()); code != 200 {
			break
		}
	}
	if code != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("past the rate limit: %d, Retry-After %q; want 429 with Retry-After through nginx", code, h.Get("Retry-After"))
	}
}

func mustToken(t *testing.T) token.Token {
	tok, err := token.New()
	must(t, err)
	return tok
}

func indexedApp(ns, name string, tok token.Token, scopes ...string) *v1alpha1.PrivateApp {
	return &v1alpha1.PrivateApp{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.PrivateAppSpec{Scopes: scopes},
		Status:     v1alpha1.PrivateAppStatus{Token: &v1alpha1.TokenStatus{Digest: tok.Digest().String()}},
	}
}
