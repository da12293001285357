package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestTokenServiceThroughTheManager: the built token service, beside the
// manager, serves over TLS, applies each namespace's edition labels, and keeps
// answering from its cache while kube-apiserver is down.
func TestTokenServiceThroughTheManager(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	env, c, kubeconfig := startControlPlane(t, root, tmp)
	addr := freeAddress(t)
	madeCert, madeKey, pool := selfSignedCert(t, tmp)
	// The certificate arrives after the manager starts, as a Secret made by
	// the operator's own CA does: the token service waits for it.
	certFile, keyFile := filepath.Join(tmp, "later", "tls.crt"), filepath.Join(tmp, "later", "tls.key")

	mgr := &componentProcess{t: t, bin: bins.Path(framework.TokenService), kubeconfig: kubeconfig, log: filepath.Join(tmp, "token-service.log"),
		args: []string{"--token-service-bind-address=" + addr, "--token-service-tls-cert=" + certFile, "--token-service-tls-key=" + keyFile}}
	mgr.start()
	defer mgr.kill()
	startManager(t, kubeconfig, filepath.Join(tmp, "manager.log"))
	waitCtx, waitCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer waitCancel()
	waitUntil(t, waitCtx, "the token service says it waits for its certificate", func() bool {
		b, _ := os.ReadFile(mgr.log)
		return strings.Contains(string(b), "waiting for the token service certificate")
	})
	must(t, os.MkdirAll(filepath.Dir(certFile), 0o755))
	must(t, os.Rename(madeKey, keyFile))
	must(t, os.Rename(madeCert, certFile))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tokens := map[string]string{}
	for ns, labels := range map[string]map[string]string{
		"team-free": nil,
		"team-pro":  {v1alpha1.EditionLabel: "professional"},
		"team-plus": {v1alpha1.EditionLabel: "starter", v1alpha1.APILimitIncreaseLabel: "true"},
	} {
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}))
		_, tokens[ns] = createReadyApp(t, ctx, c, ns, "crm", "crm.objects.contacts.read")
	}

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	check := func(ns string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/v1/check", nil)
		req.Header.Set("Authorization", "Bearer "+tokens[ns])
		resp, err := https.Do(req)
		if err != nil {
			t.Fatalf("https check: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-RateLimit-Limit") + "/" + resp.Header.Get("X-RateLimit-Daily")
	}
	for ns, want := range map[string]string{"team-free": "100/250000", "team-pro": "150/500000", "team-plus": "200/1000000"} {
		if code, limits := check(ns); code != 200 || limits != want {
			t.Errorf("%s: %d with limits %s, want 200 with %s", ns, code, limits, want)
		}
	}
	if resp, err := http.Get("http://" + addr + "/v1/check"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("plain HTTP to the TLS port answered %d", resp.StatusCode)
		}
	}

	// kube-apiserver dies; the token service answers from its cache.
	port := env.ControlPlane.APIServer.SecureServing.ListenAddr.Port
	must(t, exec.Command("pkill", "-KILL", "-f", "kube-apiserver.*--secure-port="+port).Run())
	waitUntil(t, ctx, "kube-apiserver is unreachable", func() bool {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	if code, _ := check("team-pro"); code != 200 {
		t.Fatalf("with kube-apiserver down: %d, want 200 from the cache", code)
	}
	if code, _ := check("team-free"); code != 200 {
		t.Fatalf("with kube-apiserver down: %d, want 200 from the cache", code)
	}
}

func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "privateapp-token-service"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
