package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Latency at a fixed rate: the harness paces requests itself (wrk2-style)
// and records each answer's time.

// paced sends GETs over conns keep-alive connections at rate requests per
// second in all for d, wrk2-style: each connection has a fixed schedule
// (one request every conns/rate seconds), and a request that waited for
// the previous answer counts from the time it was due, so a stall is not
// hidden by sending less. It returns the sorted latencies and the rate
// served.
func paced(url string, headers []string, useTLS bool, conns int, d time.Duration, rate float64) ([]time.Duration, float64) {
	u, err := neturl.Parse(url)
	if err != nil {
		panic(err)
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	reqBytes := []byte(req + "\r\n")
	interval := time.Duration(float64(time.Second) * float64(conns) / rate)
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now().Add(100 * time.Millisecond)
	stop := start.Add(d)
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var err error
			if useTLS {
				conn, err = tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback benchmark
			} else {
				conn, err = net.Dial("tcp", u.Host)
			}
			if err != nil {
				return
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 16<<10)
			mine := make([]time.Duration, 0, int(d/interval)+1)
			var answered time.Time
			for due := start.Add(interval * time.Duration(k) / time.Duration(conns)); due.Before(stop); due = due.Add(interval) {
				time.Sleep(time.Until(due))
				// A request held up by the previous answer counts from when
				// it was due; one the harness's own timer woke late counts
				// from when it went out (Go's timers oversleep by up to a
				// millisecond when the process idles, which is not the
				// server's latency).
				from := time.Now()
				if answered.After(due) {
					from = due
				}
				if _, err := conn.Write(reqBytes); err != nil {
					return
				}
				status, err := readResponse(br)
				if err != nil || status != http.StatusOK {
					return
				}
				answered = time.Now()
				mine = append(mine, answered.Sub(from))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, float64(len(lat)) / d.Seconds()
}

// readResponse reads one HTTP/1.1 answer and returns its status code.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("short status line %q", line)
	}
	status := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	length := 0
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
			length, err = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
			if err != nil {
				return 0, err
			}
		}
	}
	if _, err := br.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

// pct is the p-th percentile of sorted; p above 100 is in tenths (999 is
// the 99.9th).
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	scale := 100
	if p > 100 {
		scale = 1000
	}
	i := (len(sorted)*p + scale - 1) / scale
	if i > 0 {
		i--
	}
	return sorted[i].Round(time.Microsecond)
}
