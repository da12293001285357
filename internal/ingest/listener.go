package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/privateapps-dev/privateapp-operator/internal/certs"
)

// HTTPS serves the ingest endpoints over TLS. With a client CA, a client
// certificate it signed lets a sender in; the certificate is reloaded when
// its files change.
type HTTPS struct {
	Addr              string
	CertFile, KeyFile string
	// ClientCAFile, when set, is the CA whose client certificates are
	// accepted instead of a sender kind's shared secret (the common name
	// says the kind).
	ClientCAFile string
	Handler      http.Handler
	Log          logr.Logger

	ln net.Listener
}

// Listen binds the address, so that a bad one fails at start.
func (s *HTTPS) Listen() error {
	if s.CertFile == "" || s.KeyFile == "" {
		return errors.New("the ingest endpoints serve HTTPS: give --tls-cert-file and --tls-private-key-file")
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("ingest listener: %w", err)
	}
	s.ln = ln
	return nil
}

// NeedLeaderElection is false.
func (s *HTTPS) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *HTTPS) Start(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	cw, err := certwatcher.New(s.CertFile, s.KeyFile)
	if err != nil {
		_ = s.ln.Close()
		return fmt.Errorf("ingest certificate: %w", err)
	}
	go func() { _ = cw.Start(ctx) }()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cw.GetCertificate}
	if s.ClientCAFile != "" {
		pool, err := certs.LoadPool(s.ClientCAFile)
		if err != nil {
			return fmt.Errorf("ingest client CA: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	srv := &http.Server{Handler: s.Handler, TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second, MaxHeaderBytes: 32 << 10}
	go func() { //nolint:gosec // G118: the shutdown outlives ctx, which has ended
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	s.Log.Info("call-log ingest listening", "address", s.ln.Addr().String(), "clientCertificates", s.ClientCAFile != "")
	if err := srv.Serve(tls.NewListener(s.ln, cfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
