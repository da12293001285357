// Command tool is the small static program of the cluster's own images:
// `tool pause` is the pods' sandbox process (the pause image), `tool check`
// asks the token service from inside a pod (the probe image the cluster
// suite runs as a Job).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tool pause | tool check URL CA-FILE TOKEN-FILE METHOD URI HOST")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "pause":
		pause()
	case "check":
		if len(os.Args) != 8 {
			fmt.Fprintln(os.Stderr, "usage: tool check URL CA-FILE TOKEN-FILE METHOD URI HOST")
			os.Exit(2)
		}
		os.Exit(check(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6], os.Args[7]))
	default:
		fmt.Fprintf(os.Stderr, "tool: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// pause holds the pod's namespaces until it is told to stop, and reaps
// the orphans it inherits as PID 1.
func pause() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

// check asks the token service at url, as a ForwardAuth gateway does,
// whether the token of tokenFile may make the request METHOD URI to host,
// trusting the CA of caFile, and prints the answer's status code; it exits
// 0 once it has an answer, 1 when there is none.
func check(url, caFile, tokenFile, method, uri, host string) int {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(caFile)
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		fmt.Fprintf(os.Stderr, "no CA certificates in %s: %v\n", caFile, err)
		return 1
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", uri)
	req.Header.Set("X-Forwarded-Host", host)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	fmt.Println(resp.StatusCode)
	return 0
}
