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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
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
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cat := &v1alpha1.APICatalog{}
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "privateapps_v1alpha1_apicatalog.yaml"))
	must(t, err)
	must(t, yaml.UnmarshalStrict(data, cat))
	must(t, c.Create(ctx, cat))

	addrA, addrB := freeAddress(t), freeAddress(t)
	serviceA := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--token-service-bind-address=" + addrA, "--token-service-insecure", "--token-service-route-header"}}
	serviceA.start()
	defer serviceA.kill()
	controllers := startManager(t, kubeconfig, filepath.Join(tmp, "manager.log"))
	replica := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "replica.log"),
		args: []string{"--token-service-bind-address=" + addrB, "--token-service-insecure", "--token-service-route-header"}}
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
	unknownToken, err := token.New()
	must(t, err)
	unknown := unknownToken.Reveal()
	paused, pausedToken := createReadyApp(t, ctx, c, "default", "paused-sync", "crm.objects.contacts.read")
	patch := client.MergeFrom(paused.DeepCopy())
	paused.Spec.Suspend = true
	must(t, c.Patch(ctx, paused, patch))
	waitUntil(t, ctx, "both token services refuse the disconnected app", func() bool {
		return checkStatus(addrA, pausedToken) == 403 && checkStatus(addrB, pausedToken) == 403
	})

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
	must(t, os.WriteFile(filepath.Join(nginxDir, "nginx.conf"), fmt.Appendf(nil, framework.NginxGateway, nginxDir, nginxAddr, addrA, upstreamAddr, "/v1/check"), 0o600))
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
		// challenge is the WWW-Authenticate the client gets (RFC 6750).
		challenge string
	}
	scopeChallenge := func(scope string) string {
		return `Bearer realm="privateapps", error="insufficient_scope", scope="` + scope + `"`
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
			{name: "a route's scope missing", method: "GET", path: "/crm/v3/objects/deals/1", tok: reporting, code: 403,
				challenge: scopeChallenge("crm.objects.deals.read")},
			{name: "another method of the same path", method: "DELETE", path: "/crm/v3/objects/contacts/1", tok: reporting, code: 403,
				challenge: scopeChallenge("crm.objects.contacts.write")},
			{name: "no route", method: "GET", path: "/crm/v3/objects/secrets", tok: reporting, code: 403},
			{name: "a write route", method: "POST", path: "/crm/v3/objects/products", tok: warehouse, code: 200, route: "crm/products-create"},
			{name: "the issue's reproduction", method: "GET", path: "/crm/v3/objects/deals/1", tok: warehouse, code: 403,
				challenge: scopeChallenge("crm.objects.deals.read")},
			{name: "dot segments", method: "GET", path: "/crm/v3/objects/products/../deals/1", tok: warehouse, code: 403,
				challenge: scopeChallenge("crm.objects.deals.read")},
			{name: "the gateway's own headers, spoofed", method: "GET", path: "/crm/v3/objects/deals/1", tok: warehouse, header: gw.own, code: 403,
				challenge: scopeChallenge("crm.objects.deals.read")},
			{name: "the other gateway's headers, spoofed", method: "GET", path: "/crm/v3/objects/deals/1", tok: warehouse, header: gw.other, code: 403},
			{name: "no token", method: "GET", path: "/crm/v3/objects/contacts/1", code: 401, challenge: `Bearer realm="privateapps"`},
			{name: "an unknown token", method: "GET", path: "/crm/v3/objects/contacts/1", tok: unknown, code: 401,
				challenge: `Bearer realm="privateapps", error="invalid_token"`},
			{name: "a malformed token", method: "GET", path: "/crm/v3/objects/contacts/1", tok: "not-a-token", code: 401,
				challenge: `Bearer realm="privateapps", error="invalid_token"`},
			{name: "a disconnected app's token", method: "GET", path: "/crm/v3/objects/contacts/1", tok: pausedToken, code: 403,
				challenge: `Bearer realm="privateapps", error="invalid_token"`},
			{name: "a client's identity headers", method: "GET", path: "/crm/v3/objects/contacts/1", tok: reporting, code: 200, route: "crm/contacts-get",
				header: map[string]string{"X-PrivateApp-Scopes": "crm.objects.deals.write", "X-PrivateApp-Name": "someone-else"}},
		} {
			code, header, body := viaGatewayHeader(t, gw.addr, "api.example.com", tc.method, tc.path, tc.tok, tc.header)
			if code != tc.code {
				t.Errorf("%s, %s: %s %s answered %d (%s), want %d", gw.name, tc.name, tc.method, tc.path, code, body, tc.code)
				continue
			}
			if got := header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("%s, %s: WWW-Authenticate %q, want %q", gw.name, tc.name, got, tc.challenge)
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
	for _, log := range []string{controllers.log, serviceA.log, replica.log} {
		b, _ := os.ReadFile(log)
		for _, tok := range []string{reporting, warehouse} {
			if strings.Contains(string(b), tok) {
				t.Errorf("a token appears in %s", log)
			}
		}
	}
}

// TestClientsCannotPickTheHostThroughGateways: two catalogs route by host,
// api.example.com's refusing requests none of its routes match and
// billing.example.com's letting any valid token through. A client of
// api.example.com adds the headers that would name billing's host
// (X-Forwarded-Host, a relative X-Original-URL, X-Forwarded-Uri) and asks
// for a path no route of api.example.com matches. Through a real nginx
// with the documented configuration, through nginx configured with a
// relative X-Original-URL ($request_uri, as some setups do), and through a
// real Caddy, the call is refused; the same path asked of billing's host is
// allowed through the documented gateways, so the refusal is the host's.
// With nginx's relative URL the client's X-Forwarded-Host used to decide
// the host, and the call passed; now no host is known there, and every
// check is refused with an answer that asks for the absolute URL.
func TestClientsCannotPickTheHostThroughGateways(t *testing.T) {
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
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	crm := &v1alpha1.APICatalog{}
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "privateapps_v1alpha1_apicatalog.yaml"))
	must(t, err)
	must(t, yaml.UnmarshalStrict(data, crm))
	crm.Spec.Hosts = []string{"api.example.com"}
	billing := &v1alpha1.APICatalog{ObjectMeta: metav1.ObjectMeta{Name: "billing"}, Spec: v1alpha1.APICatalogSpec{
		Hosts: []string{"billing.example.com"}, UnmatchedRequests: v1alpha1.UnmatchedAllow,
		Scopes: []v1alpha1.CatalogScope{{Name: "billing.invoices.read"}}}}
	for _, cat := range []*v1alpha1.APICatalog{crm, billing} {
		must(t, c.Create(ctx, cat))
	}
	addr := freeAddress(t)
	mgr := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--token-service-bind-address=" + addr, "--token-service-insecure"}}
	mgr.start()
	defer mgr.kill()
	startManager(t, kubeconfig, filepath.Join(tmp, "manager.log"))
	for _, cat := range []*v1alpha1.APICatalog{crm, billing} {
		waitUntil(t, ctx, "catalog "+cat.Name+" is in force", func() bool {
			return c.Get(ctx, client.ObjectKeyFromObject(cat), cat) == nil && meta.IsStatusConditionTrue(cat.Status.Conditions, v1alpha1.ConditionReady)
		})
	}
	_, tok := createReadyApp(t, ctx, c, "default", "crm-reporting", "crm.objects.contacts.read")
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upstream") }))
	defer upstream.Close()
	upstreamAddr := strings.TrimPrefix(upstream.URL, "http://")

	gateways := map[string]string{}
	for name, conf := range map[string]string{
		"nginx":                                framework.NginxGateway,
		"nginx with a relative X-Original-URL": strings.Replace(framework.NginxGateway, "X-Original-URL $scheme://$http_host$request_uri", "X-Original-URL $request_uri", 1),
	} {
		if name != "nginx" && conf == framework.NginxGateway {
			t.Fatal("the relative X-Original-URL was not put into nginx's configuration")
		}
		gwAddr, dir := freeAddress(t), t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), fmt.Appendf(nil, conf, dir, gwAddr, addr, upstreamAddr, "/v1/check"), 0o600))
		startGateway(t, exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf")), gwAddr)
		gateways[name] = gwAddr
	}
	caddyAddr, caddyDir := freeAddress(t), t.TempDir()
	must(t, os.WriteFile(filepath.Join(caddyDir, "Caddyfile"), fmt.Appendf(nil, caddyConf, caddyAddr[strings.LastIndexByte(caddyAddr, ':')+1:], addr, upstreamAddr), 0o600))
	cmd := exec.Command(caddy, "run", "--adapter", "caddyfile", "--config", filepath.Join(caddyDir, "Caddyfile"))
	cmd.Env = append(os.Environ(), "HOME="+caddyDir, "XDG_DATA_HOME="+caddyDir, "XDG_CONFIG_HOME="+caddyDir)
	startGateway(t, cmd, caddyAddr)
	gateways["caddy"] = caddyAddr

	billingHost := map[string]string{"X-Forwarded-Host": "billing.example.com", "X-Original-URL": "/admin/users",
		"X-Forwarded-Uri": "/admin/users", "X-Forwarded-Method": "GET"}
	for name, gw := range gateways {
		if name == "nginx with a relative X-Original-URL" {
			// Nothing the gateway sends names the host: every check is
			// refused while catalogs route by host, billing's too, and the
			// answer says to send the absolute URL.
			for _, host := range []string{"billing.example.com", "api.example.com"} {
				code, _ := viaGatewayTo(t, gw, host, "GET", "/admin/users", tok, nil)
				if code != http.StatusForbidden {
					t.Errorf("%s: GET %s/admin/users: %d, want 403: the host is unknown", name, host, code)
				}
			}
			code, body := rawRequest(t, addr, "GET /v1/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+
				"\r\nX-Original-Method: GET\r\nX-Original-URL: /admin/users\r\nX-Forwarded-Host: billing.example.com\r\nConnection: close\r\n\r\n")
			if code != http.StatusForbidden || !strings.Contains(body, "does not say which host") {
				t.Errorf("the check nginx sends with a client's X-Forwarded-Host: %d %s, want 403 saying the host is unknown", code, body)
			}
		} else {
			waitUntil(t, ctx, name+" lets billing's host through", func() bool {
				code, _ := viaGatewayTo(t, gw, "billing.example.com", "GET", "/admin/users", tok, nil)
				return code == http.StatusOK
			})
			if code, body := viaGatewayTo(t, gw, "api.example.com", "GET", "/admin/users", tok, nil); code != http.StatusForbidden {
				t.Errorf("%s: GET api.example.com/admin/users, which no route matches: %d %s, want 403", name, code, body)
			}
		}
		if code, body := viaGatewayTo(t, gw, "api.example.com", "GET", "/admin/users", tok, billingHost); code != http.StatusForbidden {
			t.Errorf("%s: GET api.example.com/admin/users with a client's headers naming billing.example.com: %d %s, want 403", name, code, body)
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

// viaGatewayTo sends a client's request for host through a gateway and
// returns the status and the body.
func viaGatewayTo(t *testing.T, addr, host, method, path, tok string, header map[string]string) (int, string) {
	t.Helper()
	code, _, body := viaGatewayHeader(t, addr, host, method, path, tok, header)
	return code, body
}

// viaGatewayHeader is viaGatewayTo that returns the answer's header too.
func viaGatewayHeader(t *testing.T, addr, host, method, path, tok string, header map[string]string) (int, http.Header, string) {
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
	return rawRequestHeader(t, addr, fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n%s%sContent-Length: 0\r\nConnection: close\r\n\r\n", method, path, host, bearer, extra.String()))
}

// rawRequest writes one HTTP/1.1 request as given and reads the answer. The
// body it returns has every token redacted, since it may go into a failure.
func rawRequest(t *testing.T, addr, request string) (int, string) {
	t.Helper()
	code, _, body := rawRequestHeader(t, addr, request)
	return code, body
}

// rawRequestHeader is rawRequest that returns the answer's header too.
func rawRequestHeader(t *testing.T, addr, request string) (int, http.Header, string) {
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
	return resp.StatusCode, resp.Header, token.Redact(string(body))
}
