package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// TokenServiceClient calls a release's token service through its Service's
// ClusterIP from the host, as a gateway on the node would, trusting the
// chart's CA and naming the Service's DNS name.
type TokenServiceClient struct {
	// URL is the token service's base URL (https://NAME.NAMESPACE.svc:PORT).
	URL string
	// Addr is the ClusterIP and port the connections go to.
	Addr   string
	client *http.Client
}

// TokenService returns a client of the token service of the Helm release
// in namespace.
func TokenService(ctx context.Context, c *Cluster, namespace, release string) (*TokenServiceClient, error) {
	svc := release + "-token-service"
	addr, err := c.Kubectl(ctx, "", "get", "service", svc, "-n", namespace, "-o", `jsonpath={.spec.clusterIP}:{.spec.ports[?(@.name=="https")].port}`)
	if err != nil {
		return nil, err
	}
	_, port, err := net.SplitHostPort(strings.TrimSpace(addr))
	if err != nil {
		return nil, fmt.Errorf("service %s/%s: %q: %w", namespace, svc, addr, err)
	}
	caB64, err := c.Kubectl(ctx, "", "get", "secret", svc+"-tls", "-n", namespace, "-o", `jsonpath={.data.ca\.crt}`)
	if err != nil {
		return nil, err
	}
	ca, err := base64.StdEncoding.DecodeString(strings.TrimSpace(caB64))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("secret %s/%s-tls holds no CA certificate", namespace, svc)
	}
	host := svc + "." + namespace + ".svc"
	target := strings.TrimSpace(addr)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &TokenServiceClient{
		URL:  "https://" + net.JoinHostPort(host, port),
		Addr: target,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, target)
			},
			MaxIdleConnsPerHost: 4,
		}},
	}, nil
}

// Check asks, as a ForwardAuth gateway does, whether token may make the
// request METHOD URI (matched against the APICatalogs), and returns the
// answer's status code; an error means there was no answer.
func (t *TokenServiceClient) Check(ctx context.Context, token, method, uri string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL+"/v1/check", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", uri)
	req.Header.Set("X-Forwarded-Host", GatewayHost)
	resp, err := t.client.Do(req)
	if err != nil {
		// The URL and the error name the Service, never the token.
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

// GatewayHost is the host the checks of TokenServiceClient say the
// client called.
const GatewayHost = "api.privateapps.test"

// Token reads the token of an app's Secret. Callers must not print it.
func Token(ctx context.Context, c *Cluster, namespace, secret string) (string, error) {
	out, err := c.Kubectl(ctx, "", "get", "secret", secret, "-n", namespace, "-o", `jsonpath={.data.token}`)
	if err != nil {
		return "", err
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", errors.New("secret " + namespace + "/" + secret + " holds no token")
	}
	return string(b), nil
}

// Scrape gets https://addr/metrics with token as a Bearer token (none when
// empty), as Prometheus does with the chart's ServiceMonitor: the
// endpoint's certificate is self-signed, so it is not verified. It returns
// the status code and the body.
func Scrape(ctx context.Context, addr, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // what is tested is who gets in
	}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, string(body), err
}
