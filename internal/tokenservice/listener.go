package tokenservice

import (
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
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// Listener listens for the token service as a manager runnable on every
// replica (no leader election: any replica answers). It serves HTTP/1.1
// with fasthttp: see docs/token-service.md#http-engine.
type Listener struct {
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
	Service                 *Service
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
func (l *Listener) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (l *Listener) Start(ctx context.Context) error {
	if !l.Insecure && (l.CertFile == "" || l.KeyFile == "") {
		return errors.New("the token service needs --token-service-tls-cert and --token-service-tls-key, " +
			"or --token-service-insecure to serve plain HTTP for local use")
	}
	if l.Insecure && l.ClientCAFile != "" {
		return errors.New("--token-review-client-ca needs TLS: client certificates cannot be verified with --token-service-insecure")
	}
	if !l.Cache.WaitForCacheSync(ctx) {
		return errors.New("the token service's caches did not sync")
	}
	if l.Ready != nil && !l.Ready(ctx) {
		return nil // stopped before it was ready
	}
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return fmt.Errorf("token service listening on %s: %w", l.Addr, err)
	}
	// Per source inside the overall bound: a refused connection takes no
	// slot of it.
	ln = limitPerSource(ln, l.MaxConnectionsPerSource)
	h := newHouse(ln, l.MaxConnections)
	if h != nil {
		ln = h
	}
	if !l.Insecure {
		if !l.waitForCertificate(ctx) {
			_ = ln.Close()
			return nil
		}
		cw, err := certwatcher.New(l.CertFile, l.KeyFile)
		if err != nil {
			return fmt.Errorf("token service certificate: %w", err)
		}
		go func() { _ = cw.Start(ctx) }()
		cfg, err := servingTLS(cw.GetCertificate, l.ClientCAFile)
		if err != nil {
			_ = ln.Close()
			return err
		}
		ln = tls.NewListener(ln, cfg)
	}
	l.Log.Info("token service listening", "address", ln.Addr().String(), "tls", !l.Insecure)
	if l.Listening != nil {
		l.Listening()
	}
	return serve(ctx, ln, l.Service, l.Log, h)
}

// Serve answers svc's requests on ln until ctx ends, then stops taking
// requests and gives those under way 5 s.
func Serve(ctx context.Context, ln net.Listener, svc *Service, log logr.Logger) error {
	return serve(ctx, ln, svc, log, nil)
}

// serve is Serve; h, when not nil, is the house under ln, told each
// connection's phase.
func serve(ctx context.Context, ln net.Listener, svc *Service, log logr.Logger, h *house) error {
	fs := newServer(svc.Handler(), log)
	if h != nil {
		fs.ConnState = func(c net.Conn, state fasthttp.ConnState) {
			h.connState(c, phaseOf(state == fasthttp.StateNew, state == fasthttp.StateIdle), state == fasthttp.StateClosed || state == fasthttp.StateHijacked)
		}
	}
	go func() { //nolint:gosec // G118: the shutdown outlives ctx, which has ended
		<-ctx.Done()
		stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fs.ShutdownWithContext(stop)
	}()
	if err := fs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// servingTLS is the token service's TLS configuration: TLS 1.2 or newer,
// and, with clientCAFile, client certificates of that CA verified when a
// client presents one. A certificate that does not verify fails the
// handshake; no certificate is fine (gateways present none). fasthttp
// speaks HTTP/1.1 only, so ALPN offers no h2.
func servingTLS(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), clientCAFile string) (*tls.Config, error) {
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

// maxHeaderBytes bounds a request's header section: a gateway's
// X-Original-URL (up to maxOriginalHeader) fits with room to spare.
const maxHeaderBytes = 32 << 10

// newServer is the token service's fasthttp server, bounding what one
// client can hold: 10 s to read a request and to write an answer, 90 s
// idle between keep-alive requests, 32 KiB of headers, 16 KiB of body
// (refused before a handler runs: fasthttp allocates a declared body
// before it arrives, so the bound is what a stalled request can make it
// hold, 48 KiB a connection with the header buffer). Buffers of idle
// connections go back to a pool.
// Answers carry no Server header and no default Content-Type; errors
// before a handler are JSON like every other error; fasthttp's own log
// lines go through the token redactor.
func newServer(h fasthttp.RequestHandler, log logr.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      h,
		ErrorHandler:                 requestError,
		ReadTimeout:                  10 * time.Second,
		WriteTimeout:                 10 * time.Second,
		IdleTimeout:                  90 * time.Second,
		ReadBufferSize:               maxHeaderBytes,
		MaxRequestBodySize:           maxBody,
		ReduceMemoryUsage:            true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		SecureErrorLogMessage:        true,
		CloseOnShutdown:              true,
		Logger:                       serverLogger{log},
	}
}

// requestError answers a request fasthttp could not read.
func requestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		writeErrorCtx(ctx, http.StatusRequestHeaderFieldsTooLarge, categoryValidation,
			fmt.Sprintf("the request's headers are over %d bytes", maxHeaderBytes), correlationID())
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeErrorCtx(ctx, http.StatusRequestEntityTooLarge, categoryValidation, fmt.Sprintf("the request body is over %d bytes", maxBody), correlationID())
	case errors.As(err, &netErr) && netErr.Timeout():
		writeErrorCtx(ctx, http.StatusRequestTimeout, categoryValidation, "the request did not arrive within 10 s", correlationID())
	default:
		writeErrorCtx(ctx, http.StatusBadRequest, categoryValidation, "the request is not valid HTTP/1.1", correlationID())
	}
}

// serverLogger takes fasthttp's log lines without their arguments: some
// quote a request's bytes (its headers, credentials of any kind), so only
// the message's form is logged.
type serverLogger struct{ log logr.Logger }

func (l serverLogger) Printf(format string, _ ...any) {
	l.log.V(1).Info("fasthttp: " + token.Redact(format))
}

// waitForCertificate waits until the certificate files exist: with the
// operator's own CA, the Secret they are mounted from is made by this very
// process (or its controller replicas) after it starts, and the kubelet
// fills the volume a little later.
// It reports false when ctx ended first.
func (l *Listener) waitForCertificate(ctx context.Context) bool {
	logged := false
	for {
		_, errCert := os.Stat(l.CertFile)
		_, errKey := os.Stat(l.KeyFile)
		if errCert == nil && errKey == nil {
			return true
		}
		if !logged {
			l.Log.Info("waiting for the token service certificate", "cert", l.CertFile, "key", l.KeyFile)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}
