package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/certs"
)

// Client sends a token-service replica's entries to the insights
// component's ingest endpoint: a calllog.Writer behind the replica's queue,
// so a slow or absent insights component costs the checks nothing.
type Client struct {
	// URL is the ingest base URL, https://<insights service>:8445.
	URL    string
	Token  []byte
	Client *http.Client
}

// NewClient builds a client that verifies the server with caFile (the
// operator's CA bundle; empty uses the system roots) and presents token.
func NewClient(url, caFile string, token []byte) (*Client, error) {
	if !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("--call-log-url %q: the ingest endpoint is HTTPS (https://<insights service>:8445)", url)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := certs.LoadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("--call-log-ca-file: %w", err)
		}
		cfg.RootCAs = pool
	}
	return &Client{URL: strings.TrimRight(url, "/"), Token: token, Client: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second},
	}}, nil
}

// Write posts one batch.
func (c *Client) Write(ctx context.Context, entries []calllog.Entry) error {
	body := calllog.AppendJSON(make([]byte, 0, 320*len(entries)), entries)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+PathCalls, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if len(c.Token) > 0 {
		req.Header.Set("Authorization", "Bearer "+string(c.Token))
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return fmt.Errorf("sending call-log entries: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("the ingest endpoint answered %s: %s", resp.Status, bytes.TrimSpace(msg))
		if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge {
			return &calllog.PermanentError{Err: err}
		}
		return err
	}
	return nil
}
