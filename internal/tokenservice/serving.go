package tokenservice

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/valyala/fasthttp"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/privateapps-dev/privateapp-operator/internal/certs"
)

// Serving runs the token service's HTTP server as a manager runnable on
// every replica (no leader election: any replica answers).
type Serving struct {
	Addr string
	// CertFile and KeyFile serve TLS, reloaded when they change.
	CertFile, KeyFile string
	// Insecure serves plain HTTP; for local use only.
	Insecure bool
	// ClientCAFile, when set, is a PEM bundle whose client certificates
	// the listener verifies when a client presents one (kube-apiserver
	// calling TokenReview); clients without one are still served.
	ClientCAFile string
	// MaxConnections bounds the connections served at once; further ones
	// wait in the listen backlog. Zero is no bound.
	MaxConnections int
	// MaxConnectionsPerSource bounds the connections one source address
	// holds; one more is closed at once. Zero is no bound.
	MaxConnectionsPerSource int
	Server                  *Server
	// Engine is the HTTP engine; empty is EngineFastHTTP.
	Engine Engine
	// Cache must have synced before the first answer: an empty index would
	// refuse every valid token.
	Cache cache.Cache
	// Ready, when set, must report true before the first answer too: the
	// API catalogs must be compiled, or a request no route matches would
	// pass.
	Ready func(context.Context) bool
	// Listening, when set, is called once the listener is up.
	Listening func()
	Log       logr.Logger
}

// NeedLeaderElection is false: every replica serves.
func (s *Serving) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *Serving) Start(ctx context.Context) error {
	if !s.Insecure && (s.CertFile == "" || s.KeyFile == "") {
		return errors.New("the token service needs --token-service-tls-cert and --token-service-tls-key, " +
			"or --token-service-insecure to serve plain HTTP for local use")
	}
	if s.Insecure && s.ClientCAFile != "" {
		return errors.New("--token-review-client-ca needs TLS: client certificates cannot be verified with --token-service-insecure")
	}
	if !s.Cache.WaitForCacheSync(ctx) {
		return errors.New("the token service's caches did not sync")
	}
	if s.Ready != nil && !s.Ready(ctx) {
		return nil // stopped before it was ready
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("token service listening on %s: %w", s.Addr, err)
	}
	// Per source inside the overall bound: a refused connection takes no
	// slot of it.
	ln = limitPerSource(ln, s.MaxConnectionsPerSource)
	h := newHouse(ln, s.MaxConnections)
	if h != nil {
		ln = h
	}
	if !s.Insecure {
		if !s.waitForCertificate(ctx) {
			_ = ln.Close()
			return nil
		}
		cw, err := certwatcher.New(s.CertFile, s.KeyFile)
		if err != nil {
			return fmt.Errorf("token service certificate: %w", err)
		}
		go func() { _ = cw.Start(ctx) }()
		cfg, err := ServingTLS(cw.GetCertificate, s.ClientCAFile)
		if err != nil {
			_ = ln.Close()
			return err
		}
		if s.Engine == EngineNetHTTP {
			cfg.NextProtos = []string{"h2", "http/1.1"}
		}
		ln = tls.NewListener(ln, cfg)
	}
	engine := cmp.Or(s.Engine, EngineFastHTTP)
	s.Log.Info("token service listening", "address", ln.Addr().String(), "tls", !s.Insecure, "engine", engine)
	if s.Listening != nil {
		s.Listening()
	}
	return serve(ctx, ln, s.Server, engine, s.Log, h)
}

// Serve answers on ln with engine until ctx ends, then stops taking
// requests and gives those under way 5 s.
func Serve(ctx context.Context, ln net.Listener, srv *Server, engine Engine, log logr.Logger) error {
	return serve(ctx, ln, srv, engine, log, nil)
}

// serve is Serve; h, when not nil, is the house under ln, told each
// connection's phase.
func serve(ctx context.Context, ln net.Listener, srv *Server, engine Engine, log logr.Logger, h *house) error {
	var serve func() error
	var shutdown func(context.Context) error
	switch engine {
	case EngineNetHTTP:
		hs := NewHTTPServer(srv.Handler())
		if h != nil {
			hs.ConnState = func(c net.Conn, state http.ConnState) {
				h.connState(c, phaseOf(state == http.StateNew, state == http.StateIdle), state == http.StateClosed || state == http.StateHijacked)
			}
		}
		serve, shutdown = func() error { return hs.Serve(ln) }, hs.Shutdown
	default:
		fs := NewFastServer(srv.FastHandler(), log)
		if h != nil {
			fs.ConnState = func(c net.Conn, state fasthttp.ConnState) {
				h.connState(c, phaseOf(state == fasthttp.StateNew, state == fasthttp.StateIdle), state == fasthttp.StateClosed || state == fasthttp.StateHijacked)
			}
		}
		serve, shutdown = func() error { return fs.Serve(ln) }, fs.ShutdownWithContext
	}
	go func() { //nolint:gosec // G118: the shutdown outlives ctx, which has ended
		<-ctx.Done()
		stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(stop)
	}()
	if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServingTLS is the token service's TLS configuration: TLS 1.2 or newer,
// and, with clientCAFile, client certificates of that CA verified when a
// client presents one. A certificate that does not verify fails the
// handshake; no certificate is fine (gateways present none).
func ServingTLS(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), clientCAFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert}
	if clientCAFile == "" {
		return cfg, nil
	}
	pool, err := certs.LoadPool(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("--token-review-client-ca: %w", err)
	}
	cfg.ClientAuth, cfg.ClientCAs = tls.VerifyClientCertIfGiven, pool
	return cfg, nil
}

// NewHTTPServer bounds what one client can hold: 5 s to send the headers,
// at most 32 KiB of them (a gateway's X-Original-URL included), 10 s for a
// whole request (a token-info body is tens of bytes, a TokenReview a few
// KiB) and for writing an answer, and 90 s idle between keep-alive requests.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second, MaxHeaderBytes: 32 << 10}
}

// waitForCertificate waits until the certificate files exist: with the
// operator's own CA, the Secret they are mounted from is made by this very
// process (or its controller replicas) after it starts, and the kubelet
// fills the volume a little later.
// It reports false when ctx ended first.
func (s *Serving) waitForCertificate(ctx context.Context) bool {
	logged := false
	for {
		_, errCert := os.Stat(s.CertFile)
		_, errKey := os.Stat(s.KeyFile)
		if errCert == nil && errKey == nil {
			return true
		}
		if !logged {
			s.Log.Info("waiting for the token service certificate", "cert", s.CertFile, "key", s.KeyFile)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}
