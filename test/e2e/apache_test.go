package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// apacheConf is Apache httpd with Debian's mod_auth_openidc as an OAuth 2.0
// resource server, configured with its standard directives only, as
// docs/token-service.md gives them: it discovers the introspection endpoint
// from the token service's RFC 8414 metadata, authenticates with its client
// id and secret, caches an answer for a second, and requires the scope per
// location (403 when the app lacks it, with AuthzSendForbiddenOnFailure;
// Apache answers 401 otherwise). The upstream gets the app's name from the sub claim and no
// token.
const apacheConf = `ServerRoot /usr/lib/apache2
ServerName localhost
Listen %[2]s
PidFile %[1]s/apache.pid
DefaultRuntimeDir %[1]s
Mutex file:%[1]s default
ErrorLog %[1]s/error.log
LogLevel warn
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authn_core_module modules/mod_authn_core.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule headers_module modules/mod_headers.so
LoadModule proxy_module modules/mod_proxy.so
LoadModule proxy_http_module modules/mod_proxy_http.so
LoadModule auth_openidc_module modules/mod_auth_openidc.so
User www-data
Group www-data

OIDCOAuthServerMetadataURL http://%[3]s/.well-known/oauth-authorization-server
OIDCOAuthClientID apache
OIDCOAuthClientSecret %[4]s
OIDCOAuthIntrospectionEndpointAuth client_secret_basic
OIDCOAuthTokenIntrospectionInterval 1

<Location /crm/v3/objects/contacts>
  AuthType oauth20
  Require claim scope~(^|\s)crm\.objects\.contacts\.read(\s|$)
  AuthzSendForbiddenOnFailure On
  RequestHeader unset Authorization
  RequestHeader set X-App "%%{OIDC_CLAIM_sub}e"
  ProxyPass http://%[5]s/contacts
</Location>
`

// TestApacheIntrospection runs the manager against a real API server, and
// Apache httpd with mod_auth_openidc in front of an upstream, introspecting
// through the token service's OAuth 2.0 endpoints: an app with the scope
// passes, one without is refused, a rotated-away token is refused within a
// second of the token service refusing it, and a wrong client secret lets
// nothing through.
func TestApacheIntrospection(t *testing.T) {
	apache, err := exec.LookPath("apache2")
	if err != nil {
		apache = "/usr/sbin/apache2"
	}
	if _, err := os.Stat("/usr/lib/apache2/modules/mod_auth_openidc.so"); err != nil {
		t.Fatal("this test runs Apache httpd with mod_auth_openidc: install Debian's apache2 and libapache2-mod-auth-openidc (make test-deps does)")
	}
	root := repoRoot(t)
	tmp := t.TempDir()
	must(t, os.Chmod(tmp, 0o755)) // Apache's children run as www-data
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const secret = "apache-client-secret-0123456789"
	clients := filepath.Join(tmp, "clients.yaml")
	must(t, os.WriteFile(clients, []byte("clients:\n- id: apache\n  secret: "+secret+"\n"), 0o600))
	tsAddr := freeAddress(t)
	manager := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--token-service-bind-address=" + tsAddr, "--token-service-insecure", "--introspection-clients-file=" + clients,
			"--token-service-issuer=http://" + tsAddr}}
	manager.start()
	defer manager.kill()
	startManager(t, kubeconfig, filepath.Join(tmp, "manager.log"))

	reader, readerToken := createReadyApp(t, ctx, c, "default", "contacts-reader", "crm.objects.contacts.read")
	_, dealsToken := createReadyApp(t, ctx, c, "default", "deals-reader", "crm.objects.deals.read")

	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app=%s authorization=%q", r.Header.Get("X-App"), r.Header.Get("Authorization"))
	}))
	defer echo.Close()
	upstream := strings.TrimPrefix(echo.URL, "http://")
	run := func(name, clientSecret string) string {
		dir := filepath.Join(tmp, name)
		must(t, os.MkdirAll(dir, 0o755))
		listen := freeAddress(t)
		conf := filepath.Join(dir, "httpd.conf")
		must(t, os.WriteFile(conf, []byte(fmt.Sprintf(apacheConf, dir, listen, tsAddr, clientSecret, upstream)), 0o644))
		cmd := exec.Command(apache, "-f", conf, "-DFOREGROUND")
		out, err := os.Create(filepath.Join(dir, "stderr"))
		must(t, err)
		cmd.Stdout, cmd.Stderr = out, out
		must(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
			}
			if t.Failed() {
				for _, f := range []string{"stderr", "error.log"} {
					b, _ := os.ReadFile(filepath.Join(dir, f))
					t.Logf("apache %s %s:\n%s", name, f, token.Redact(string(b)))
				}
			}
		})
		waitUntil(t, ctx, "Apache "+name+" listens", func() bool {
			code, _ := viaApache(listen, "")
			return code != 0
		})
		return listen
	}
	gw := run("gateway", secret)

	if code, body := viaApache(gw, readerToken); code != 200 || body != `app=privateapp:default:contacts-reader authorization=""` {
		t.Fatalf("the app with the scope: %d %q, want 200 with its identity and no token upstream", code, body)
	}
	for _, tc := range []struct {
		name, token string
		code        int
	}{
		{"an app without the scope", dealsToken, 403},
		{"no token", "", 401},
		{"an unknown token", mustToken(t).Reveal(), 401},
	} {
		if code, body := viaApache(gw, tc.token); code != tc.code {
			t.Errorf("%s: %d %q, want %d", tc.name, code, body, tc.code)
		}
	}

	// Rotated away: once the token service refuses the old token, Apache
	// does within its one-second cache.
	must(t, c.Create(ctx, &v1alpha1.TokenRotation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "leak"},
		Spec:       v1alpha1.TokenRotationSpec{AppName: reader.Name, Strategy: v1alpha1.RotationImmediate},
	}))
	waitUntil(t, ctx, "the token service refuses the rotated-away token", func() bool {
		return introspectActive(t, tsAddr, secret, readerToken) == "false"
	})
	refusedBy := time.Now().Add(1500 * time.Millisecond)
	for {
		code, _ := viaApache(gw, readerToken)
		if code == 401 {
			break
		}
		if time.Now().After(refusedBy) {
			t.Fatalf("Apache still answers %d for the rotated-away token 1.5 s after the token service refused it", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	newToken := appToken(t, ctx, c, reader)
	if code, body := viaApache(gw, newToken); code != 200 {
		t.Fatalf("the new token: %d %q, want 200", code, body)
	}

	// A gateway with a wrong client secret lets nothing through.
	bad := run("wrong-secret", "not-the-client-secret-000000")
	if code, body := viaApache(bad, newToken); code == 200 {
		t.Fatalf("with a wrong client secret Apache answered %d %q", code, body)
	}
}

// viaApache asks for a contact through Apache with tok as Bearer token.
func viaApache(addr, tok string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/crm/v3/objects/contacts/1", nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, token.Redact(string(b))
}

// introspectActive asks the token service directly, as client apache, and
// returns the answer's "active" as text.
func introspectActive(t *testing.T, addr, secret, tok string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/oauth2/introspect", strings.NewReader("token="+tok))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("apache", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(string(b), `{"active":false}`) {
		return "false"
	}
	if strings.HasPrefix(string(b), `{"active":true`) {
		return "true"
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, token.Redact(string(b)))
}
