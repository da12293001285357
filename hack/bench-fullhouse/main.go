// Command bench-fullhouse measures the token service's memory with its
// connection bound full: the built token-service command, as the chart runs the
// token service (TLS, its own process, no controllers, GOMEMLIMIT at the
// chart's memory limit, the default
// connection bounds unless --max-connections says otherwise), beside a
// local control plane, is filled from loopback source addresses (512
// each, the per-source bound) in three ways, one fresh process each:
//
//   - idle: each connection makes one check and is kept alive;
//   - silent: each connection is opened and sends nothing;
//   - stalled: each connection sends a POST's headers declaring a 16 KiB
//     body and one byte of it, the most a request can make the service
//     hold while it arrives.
//
// It prints, per way, how many connections were opened, how many shed, the
// process's peak resident memory (VmHWM) and its resident memory at the
// end, against the chart's memory limit of the token service, and whether
// a check on a new connection was answered while the house was full.
// Usage: go run ./hack/bench-fullhouse --token-service bin/token-service
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/privateapps-dev/privateapp-operator/internal/certs/certstest"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

const (
	perSource = 512 // --token-service-max-connections-per-source's default
	chartMiB  = 256 // tokenService.resources.limits.memory
)

func main() {
	tokenService := flag.String("token-service", "bin/token-service", "The token service's command (make build).")
	assets := flag.String("assets", envOr("KUBEBUILDER_ASSETS", "bin/k8s"), "Directory with etcd and kube-apiserver.")
	crds := flag.String("crds", "config/crd/bases", "The CRDs.")
	maxConnections := flag.Int("max-connections", 2048, "--token-service-max-connections of the token service (its default); a multiple of 512.")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if err := run(*tokenService, *assets, *crds, *maxConnections); err != nil {
		fmt.Fprintln(os.Stderr, "bench-fullhouse:", err)
		os.Exit(1)
	}
}

func run(tokenService, assets, crds string, maxConnections int) error {
	dir, err := os.MkdirTemp("", "bench-fullhouse")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	cp, err := framework.StartControlPlane(framework.ControlPlaneOptions{CRDs: crds, Assets: assets, Kubeconfig: filepath.Join(dir, "kubeconfig"), User: "bench"})
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	kubeconfig := cp.Kubeconfig
	ca, err := certstest.NewCA("bench-fullhouse")
	if err != nil {
		return err
	}
	certFile, keyFile, err := ca.WriteCert(dir, "tls", "token-service", []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tlsConfig := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}

	sources := maxConnections / perSource
	fmt.Printf("The token service (`bin/token-service`) as the chart runs it (TLS, %d connections at most, %d per source), "+
		"filled from %d source addresses; one process per row. The chart's memory limit is %d MiB.\n\n",
		maxConnections, perSource, sources, chartMiB)
	fmt.Println("| the house full of | connections opened | shed | peak resident (VmHWM) | resident after | a new connection's check |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, way := range []string{"idle", "silent", "stalled"} {
		row, err := fill(tokenService, kubeconfig, certFile, keyFile, tlsConfig, way, sources)
		if err != nil {
			return fmt.Errorf("%s: %w", way, err)
		}
		fmt.Println(row)
	}
	return nil
}

// fill starts a token service, fills it the given way and reports a row.
func fill(tokenService, kubeconfig, certFile, keyFile string, tlsConfig *tls.Config, way string, sources int) (string, error) {
	addr, metrics := freeAddress(), freeAddress()
	cmd := exec.Command(tokenService, "--health-probe-bind-address=0",
		"--token-service-max-connections="+strconv.Itoa(sources*perSource),
		"--token-service-bind-address="+addr, "--token-service-tls-cert="+certFile, "--token-service-tls-key="+keyFile,
		"--metrics-bind-address="+metrics, "--metrics-secure=false")
	// GOMEMLIMIT as the chart sets it, from the container's memory limit.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "GOMEMLIMIT="+strconv.Itoa(chartMiB<<20))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	gateway := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true}}
	check := func() int {
		resp, err := gateway.Get("https://" + addr + "/v1/check")
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(time.Minute)
	for check() != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			return "", errors.New("the token service did not answer within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}

	var opened atomic.Int64
	var held sync.Map
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for s := range sources {
		from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+s))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perSource {
				if ctx.Err() != nil {
					return
				}
				c, err := (&net.Dialer{LocalAddr: from, Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
				if err != nil {
					return
				}
				held.Store(c, true)
				if way != "silent" {
					if err := request(c, tlsConfig, way); err != nil {
						continue
					}
				}
				opened.Add(1)
			}
		}()
	}
	wg.Wait()
	answered := "answered"
	if code := check(); code != http.StatusUnauthorized {
		answered = fmt.Sprintf("not answered within 5 s (%d)", code)
	}
	hwm, rss, err := memory(cmd.Process.Pid)
	if err != nil {
		return "", err
	}
	shed := metricSum("http://"+metrics+"/metrics", "privateapps_token_service_connections_shed_total")
	held.Range(func(c, _ any) bool { _ = c.(net.Conn).Close(); return true })
	return fmt.Sprintf("| %s | %d of %d | %.0f | %.0f MiB | %.0f MiB | %s |", way, opened.Load(), sources*perSource, shed, hwm, rss, answered), nil
}

// request sends what the way makes a connection do over TLS: one check
// answered (idle), or a POST that stops one byte into its 16 KiB body
// (stalled). The TLS connection stays open either way.
func request(raw net.Conn, cfg *tls.Config, way string) error {
	c := tls.Client(raw, cfg.Clone())
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if way == "stalled" {
		_, err := io.WriteString(c, "POST /oauth/v2/private-apps/get/access-token-info HTTP/1.1\r\nHost: x\r\n"+
			"Content-Type: application/json\r\nContent-Length: 16384\r\n\r\n{")
		return err
	}
	if _, err := io.WriteString(c, "GET /v1/check HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// memory reads the process's peak and current resident memory in MiB.
func memory(pid int) (hwm, rss float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmHWM:":
			hwm = kb / 1024
		case "VmRSS:":
			rss = kb / 1024
		}
	}
	return hwm, rss, nil
}

// metricSum adds up every series of a counter.
func metricSum(url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, name) {
			fields := strings.Fields(line)
			v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
			sum += v
		}
	}
	return sum
}

func freeAddress() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
