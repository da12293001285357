package tokenservice

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/privateapps-dev/privateapp-operator/internal/certs/certstest"
)

// TestFullHouseShedsHeldConnections: clients that fill the connection
// bound with kept-alive connections after one request each, or with
// connections that send nothing, do not keep a gateway that opens a
// connection per check from being answered; below the bound, kept-alive
// connections stay. Over real TCP on loopback, plain and over TLS.
func TestFullHouseShedsHeldConnections(t *testing.T) {
	ca, err := certstest.NewCA("house-ca")
	must(t, err)
	certFile, keyFile, err := ca.WriteCert(t.TempDir(), "serving", "localhost", []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	must(t, err)
	serving, err := tls.LoadX509KeyPair(certFile, keyFile)
	must(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, useTLS := range []bool{false, true} {
		for _, hold := range []string{"idle", "silent"} {
			t.Run(fmt.Sprintf("tls=%t/%s", useTLS, hold), func(t *testing.T) {
				testFullHouse(t, useTLS, hold, &serving, roots)
			})
		}
	}
}

func testFullHouse(t *testing.T, useTLS bool, hold string, serving *tls.Certificate, roots *x509.CertPool) {
	const max = 8
	f := newFixture(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := newHouse(raw, max)
	var ln net.Listener = h
	if useTLS {
		ln = tls.NewListener(h, &tls.Config{Certificates: []tls.Certificate{*serving}, MinVersion: tls.VersionTLS12})
	}
	go func() { _ = serve(t.Context(), ln, f.service, logr.Discard(), h) }()
	// dial connects from a source address; a connection that is to send
	// requests speaks TLS when the house does.
	dial := func(from string, requests bool) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if useTLS && requests {
			return tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})
		}
		return c
	}
	// answered reports whether a request on c is answered within wait.
	answered := func(c net.Conn, wait time.Duration) bool {
		_ = c.SetDeadline(time.Now().Add(wait))
		if _, err := io.WriteString(c, "GET /v1/check HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusUnauthorized
	}
	shedBefore := testutil.ToFloat64(connectionsShed.WithLabelValues(hold))
	// Below the bound, a kept-alive connection stays.
	kept := dial("127.0.0.3", true)
	if !answered(kept, 2*time.Second) {
		t.Fatal("a first request is not answered")
	}
	time.Sleep(silentAfter + 200*time.Millisecond)
	if !answered(kept, 2*time.Second) {
		t.Fatal("a kept-alive connection below the bound was closed")
	}
	_ = kept.Close()
	// Another source fills the house.
	for i := range max {
		c := dial("127.0.0.2", hold == "idle")
		if hold == "idle" && !answered(c, 2*time.Second) {
			t.Fatalf("connection %d of the house is not answered", i)
		}
	}
	// A gateway that opens a connection per check is answered long before
	// the 90 s idle timeout (idle) or the 5-10 s request timeouts (silent)
	// would free a slot.
	for i := range 3 {
		if c := dial("127.0.0.4", true); !answered(c, 3*time.Second) {
			t.Fatalf("check %d on a new connection is not answered while the house is full of %s connections", i, hold)
		}
	}
	if shed := testutil.ToFloat64(connectionsShed.WithLabelValues(hold)) - shedBefore; shed == 0 {
		t.Errorf("no %s connection was counted as shed", hold)
	}
}
