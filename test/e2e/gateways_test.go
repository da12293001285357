package e2e

import (
	"bufio"
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

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// caddyConf is the ForwardAuth gateway of docs/token-service.md in Caddy
// (plain HTTP to the token service here): a client's identity headers are
// dropped first, forward_auth sets X-Forwarded-Method and -Uri (and its
// reverse proxy X-Forwarded-Host) over whatever the client sent, and the
// upstream gets the app's identity instead of its token. No scope in sight.
const caddyConf = `{
	admin off
	auto_https off
}
http://:%[1]s {
	bind 127.0.0.1
	route {
		request_header -X-PrivateApp-Namespace
		request_header -X-PrivateApp-Name
		request_header -X-PrivateApp-Id
		request_header -X-PrivateApp-User
		request_header -X-PrivateApp-Scopes
		request_header -X-PrivateApp-Route
		forward_auth %[2]s {
			uri /v1/check
			copy_headers X-PrivateApp-Namespace X-PrivateApp-Name X-PrivateApp-Id X-PrivateApp-User X-PrivateApp-Scopes X-PrivateApp-Route
		}
		reverse_proxy %[3]s {
			header_up -Authorization
		}
	}
}
`

// TestGatewaysEnforceCatalogRoutes runs the manager (controllers and token
// service) and a second token-service replica against a real API server with
// the sample APICatalog, behind a real nginx (auth_request) and a real Caddy
// (forward_auth), neither configured with any scope, and asks as Envoy does
// in path-prefix mode. The catalog's routes decide; a header a client adds
// cannot change the decision; a catalog edit reaches both replicas within a
// second.
func TestGatewaysEnforceCatalogRoutes(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("this test runs a real nginx: install Debian's nginx-light (make test-deps does)")
	}
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Fatal("this test runs a real Caddy: install Debian's caddy (make test-deps does)")
	}
	root := repoRoot(t)
	tmp := t.TempDir()
	managerBin := build(t, root, "./cmd", filepath.Join(tmp, "manager"))
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cat := &v1alpha1.APICatalog{}
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "privateapps_v1alpha1_apicatalog.yaml"))
	must(t, err)
	must(t, yaml.UnmarshalStrict(data, cat))
	must(t, c.Create(ctx, cat))

	addrA, addrB := freeAddress(t), freeAddress(t)
	controllers := &managerProcess{t: t, bin: managerBin, kubeconfig: kubeconfig, log: filepath.Join(tmp, "manager.log"),
		args: []string{"--token-service-bind-address=" + addrA, "--token-service-insecure", "--token-service-route-header"}}
	controllers.start()
	defer controllers.kill()
	replica := &managerProcess{t: t, bin: managerBin, kubeconfig: kubeconfig, log: filepath.Join(tmp, "replica.log"),
		args: []string{"--run-controllers=false", "--token-service-bind-address=" + addrB, "--token-service-insecure", "--token-service-route-header"}}
	replica.start()
	defer replica.kill()

	waitUntil(t, ctx, "the sample catalog is in force", func() bool {
		return c.Get(ctx, client.ObjectKeyFromObject(cat), cat) == nil && meta.IsStatusConditionTrue(cat.Status.Conditions, v1alpha1.ConditionReady)
	})
	if cat.Status.RoutesInForce != int32(len(cat.Spec.Routes)) || cat.Status.ScopesInForce != int32(len(cat.Spec.Scopes)) {
		t.Fatalf("status counts %d routes and %d scopes in force, want %d and %d", cat.Status.RoutesInForce, cat.Status.ScopesInForce, len(cat.Spec.Routes), len(cat.Spec.Scopes))
	}
	_, reporting := createReadyApp(t, ctx, c, "default", "crm-reporting", "crm.objects.contacts.read", "crm.objects.companies.read")
	_, warehouse := createReadyApp(t, ctx, c, "default", "warehouse-sync", "crm.objects.products.write")

	// The upstream says which app and route the gateway passed on, and
	// whether a token reached it.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app=%s route=%s authorization=%t scopes=%q", r.Header.Get("X-PrivateApp-Name"), r.Header.Get("X-PrivateApp-Route"),
			r.Header.Get("Authorization") != "", r.Header.Get("X-PrivateApp-Scopes"))
	}))
	defer upstream.Close()
	upstreamAddr := strings.TrimPrefix(upstream.URL, "http://")

	nginxAddr := freeAddress(t)
	nginxDir := filepath.Join(tmp, "nginx")
	must(t, os.MkdirAll(nginxDir, 0o755))
	must(t, os.WriteFile(filepath.Join(nginxDir, "nginx.conf"), fmt.Appendf(nil, nginxConf, nginxDir, nginxAddr, addrA, upstreamAddr, "/v1/check"), 0o600))
	startGateway(t, exec.Command(nginx, "-p", nginxDir, "-c", filepath.Join(nginxDir, "nginx.conf")), nginxAddr)

	caddyAddr := freeAddress(t)
	caddyDir := filepath.Join(tmp, "caddy")
	must(t, os.MkdirAll(caddyDir, 0o755))
	must(t, os.WriteFile(filepath.Join(caddyDir, "Caddyfile"), fmt.Appendf(nil, caddyConf, caddyAddr[strings.LastIndexByte(caddyAddr, ':')+1:], addrB, upstreamAddr), 0o600))
	cmd := exec.Command(caddy, "run", "--adapter", "caddyfile", "--config", filepath.Join(caddyDir, "Caddyfile"))
	cmd.Env = append(os.Environ(), "HOME="+caddyDir, "XDG_DATA_HOME="+caddyDir, "XDG_CONFIG_HOME="+caddyDir)
	startGateway(t, cmd, caddyAddr)

	type call struct {
		name, method, path, tok string
		header                  map[string]string
		code                    int
		route                   string
	}
	for _, gw := range []struct {
		name, addr string
		// spoof is what a client adds to pose as another request: the
		// header family this gateway sets (it must overwrite it), and the
		// other family (the token service must refuse the disagreement).
		own, other map[string]string
	}{
		{"nginx", nginxAddr,
			map[string]string{"X-Original-Method": "POST", "X-Original-URL": "http://api.example.com/crm/v3/objects/products"},
			map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/crm/v3/objects/products"}},
		{"caddy", caddyAddr,
			map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/crm/v3/objects/products"},
			map[string]string{"X-Original-Method": "POST", "X-Original-URL": "http://api.example.com/crm/v3/objects/products"}},
	} {
		for _, tc := range []call{
			{name: "a route's scope held", method: "GET", path: "/crm/v3/objects/contacts/1", tok: reporting, code: 200, route: "crm/contacts-get"},
			{name: "a route's scope missing", method: "GET", path: "/crm/v3/objects/deals/1", tok: reporting, code: 403},
			{name: "another method of the same path", method: "DELETE", path: "/crm/v3/objects/contacts/1", tok: reporting, code: 403},
			{name: "no route", method: "GET", path: "/crm/v3/objects/secrets", tok: reporting, code: 403},
			{name: "a write route", method: "POST", path: "/crm/v3/objects/products", tok: warehouse, code: 200, route: "crm/products-create"},
			{name: "the issue's reproduction", method: "GET", path: "/crm/v3/objects/deals/1", tok: warehouse, code: 403},
			{name: "dot segments", method: "GET", path: "/crm/v3/objects/products/../deals/1", tok: warehouse, code: 403},
			{name: "the gateway's own headers, spoofed", method: "GET", path: "/crm/v3/objects/deals/1", tok: warehouse, header: gw.own, code: 403},
			{name: "the other gateway's headers, spoofed", method: "GET", path: "/crm/v3/objects/deals/1", tok: warehouse, header: gw.other, code: 403},
			{name: "no token", method: "GET", path: "/crm/v3/objects/contacts/1", code: 401},
			{name: "a client's identity headers", method: "GET", path: "/crm/v3/objects/contacts/1", tok: reporting, code: 200, route: "crm/contacts-get",
				header: map[string]string{"X-PrivateApp-Scopes": "crm.objects.deals.write", "X-PrivateApp-Name": "someone-else"}},
		} {
			code, body := viaGateway(t, gw.addr, tc.method, tc.path, tc.tok, tc.header)
			if code != tc.code {
				t.Errorf("%s, %s: %s %s answered %d (%s), want %d", gw.name, tc.name, tc.method, tc.path, code, body, tc.code)
				continue
			}
			if tc.code == 200 {
				app, scopes := "crm-reporting", `"crm.objects.companies.read crm.objects.contacts.read"`
				if tc.tok == warehouse {
					app, scopes = "warehouse-sync", `"crm.objects.products.write"`
				}
				if want := fmt.Sprintf("app=%s route=%s authorization=false scopes=%s", app, tc.route, scopes); body != want {
					t.Errorf("%s, %s: the upstream saw %q, want %q", gw.name, tc.name, body, want)
				}
			}
		}
	}

	// Envoy's ext_authz in path-prefix mode: the client's method, and
	// /v1/check followed by the client's path and query, with the client's
	// Host and Authorization (Envoy's documented default headers).
	envoy := func(addr, method, pathAndQuery, tok string) (int, string) {
		return rawRequest(t, addr, fmt.Sprintf("%s /v1/check%s HTTP/1.1\r\nhost: api.example.com\r\nauthorization: Bearer %s\r\n"+
			"content-length: 0\r\nx-forwarded-proto: https\r\nx-request-id: 0b4ee2b8-7b2c-4a4c-9d9f-1b1c2c3d4e5f\r\nx-envoy-expected-rq-timeout-ms: 200\r\n\r\n",
			method, pathAndQuery, tok))
	}
	for _, addr := range []string{addrA, addrB} {
		code, body := envoy(addr, "GET", "/crm/v3/objects/deals/1", warehouse)
		if code != 403 || !strings.Contains(body, "lacks the scopes route crm/deals-get (/crm/v3/objects/deals/{dealId}) requires: crm.objects.deals.read") {
			t.Errorf("Envoy, the issue's reproduction: %d %s; want 403 naming crm.objects.deals.read", code, body)
		}
		if code, body := envoy(addr, "GET", "/crm/v3/objects/deals/1?scope=crm.objects.products.write", warehouse); code != 403 {
			t.Errorf("Envoy, a client's scope query: %d %s; want 403", code, body)
		}
		if code, body := envoy(addr, "GET", "/crm/v3/objects/contacts/1?scope=crm.objects.deals.write", reporting); code != 200 {
			t.Errorf("Envoy, a client's scope query requires nothing: %d %s; want 200", code, body)
		}
	}

	// A catalog edit reaches both replicas within a second.
	if code, _ := envoy(addrB, "GET", "/crm/v3/objects/widgets/1", warehouse); code != 403 {
		t.Fatalf("widgets before the edit: %d, want 403", code)
	}
	must(t, c.Get(ctx, client.ObjectKeyFromObject(cat), cat))
	cat.Spec.Routes = append(cat.Spec.Routes, v1alpha1.CatalogRoute{Name: "widgets-get", Methods: []v1alpha1.HTTPMethod{"GET"},
		Path: "/crm/v3/objects/widgets/{id}", Scopes: []string{"crm.objects.products.write"}})
	must(t, c.Update(ctx, cat))
	edited := time.Now()
	for _, addr := range []string{addrA, addrB} {
		for {
			if code, _ := envoy(addr, "GET", "/crm/v3/objects/widgets/1", warehouse); code == 200 {
				break
			}
			if time.Since(edited) > 5*time.Second {
				t.Fatalf("the new route does not work on %s 5 s after the edit", addr)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	took := time.Since(edited)
	t.Logf("the catalog edit was in force on both replicas %s after the API server took it", took)
	if took > time.Second {
		t.Errorf("a catalog edit took %s to reach both replicas, want under 1 s", took)
	}
	for _, log := range []string{controllers.log, replica.log} {
		b, _ := os.ReadFile(log)
		for _, tok := range []string{reporting, warehouse} {
			if strings.Contains(string(b), tok) {
				t.Errorf("a token appears in %s", log)
			}
		}
	}
}

// startGateway starts a gateway process and waits until it listens.
func startGateway(t *testing.T, cmd *exec.Cmd, addr string) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "gateway-*.log")
	must(t, err)
	cmd.Stdout, cmd.Stderr = out, out
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("%s did not listen on %s:\n%s", filepath.Base(cmd.Path), addr, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// viaGateway sends a client's request through a gateway and returns the
// status and the body.
func viaGateway(t *testing.T, addr, method, path, tok string, header map[string]string) (int, string) {
	t.Helper()
	bearer := ""
	if tok != "" {
		bearer = "Authorization: Bearer " + tok + "\r\n"
	}
	var extra strings.Builder
	for k, v := range header {
		extra.WriteString(k + ": " + v + "\r\n")
	}
	// Sent raw, so that no client library cleans the path first.
	return rawRequest(t, addr, fmt.Sprintf("%s %s HTTP/1.1\r\nHost: api.example.com\r\n%s%sContent-Length: 0\r\nConnection: close\r\n\r\n", method, path, bearer, extra.String()))
}

// rawRequest writes one HTTP/1.1 request as given and reads the answer. The
// body it returns has every token redacted, since it may go into a failure.
func rawRequest(t *testing.T, addr, request string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	must(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(conn, request)
	must(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	must(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, token.Redact(string(body))
}
