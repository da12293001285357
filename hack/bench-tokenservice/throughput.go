package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
)

// Throughput: wrk runs against each server in alternating rounds; medians
// and paired ratios.

// alternate runs wrk against each URL in turn, o.rounds times, starting
// each round one URL further, so that each side meets the machine's drift
// in every position; runs[i] are URL i's results.
func alternate(o options, urls []string, headers []string) ([][]float64, error) {
	runs := make([][]float64, len(urls))
	for round := range o.rounds {
		for k := range urls {
			i := (round + k) % len(urls)
			r, err := wrk(urls[i], headers, o.connections, o.duration)
			if err != nil {
				return nil, err
			}
			runs[i] = append(runs[i], r)
		}
	}
	return runs, nil
}

// spread lists the runs in the order they ran, so that a drift shows.
func spread(runs []float64) string {
	s := make([]string, len(runs))
	for i, r := range runs {
		s[i] = fmt.Sprintf("%.0f", r)
	}
	return "in order: " + strings.Join(s, ", ")
}

// postScript writes a wrk script that posts body as JSON.
func postScript(dir, name, body string) (string, error) {
	path := filepath.Join(dir, name)
	script := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", body)
	return path, os.WriteFile(path, []byte(script), 0o600)
}

// pairedRuns drives a and b with the same nginx-style request in ABBA
// order, so that a drift over the run (heap, CPU frequency) weighs on both
// sides alike.
func pairedRuns(o options, a, b *tokenservice.Service, tok token.Token) (ra, rb []float64, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := serveToken(ctx, a, nil)
	if err != nil {
		return nil, nil, err
	}
	second, err := serveToken(ctx, b, nil)
	if err != nil {
		return nil, nil, err
	}
	headers := []string{"Authorization: Bearer " + tok.Reveal(), "X-Original-Method: GET",
		"X-Original-URL: https://api.example.com/area7/v3/objects/type247/12345?properties=email"}
	runs, err := alternate(o, []string{first + tokenservice.PathCheck, second + tokenservice.PathCheck}, headers)
	if err != nil {
		return nil, nil, err
	}
	return runs[0], runs[1], nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// pairedRatio is the median over rounds of with/without: each round's two
// runs sit side by side in time, so their ratio cancels the machine's drift,
// which spreads single runs by ±10% here.
func pairedRatio(without, with []float64) float64 {
	r := make([]float64, len(without))
	for i := range without {
		r[i] = with[i] / without[i]
	}
	slices.Sort(r)
	return r[len(r)/2]
}

// wrk runs Debian's wrk (one thread) and returns its requests per second; a
// run with any answer other than 2xx is an error, so a refusal cannot pass
// for speed.
func wrk(url string, headers []string, conns int, d time.Duration) (float64, error) {
	return wrkScript(url, headers, "", conns, d)
}

// wrkScript is wrk with a Lua script (-s), when given.
func wrkScript(url string, headers []string, script string, conns int, d time.Duration) (float64, error) {
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds()))}
	if script != "" {
		args = append(args, "-s", script)
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	out, err := exec.Command("wrk", append(args, url)...).Output()
	if err != nil {
		return 0, fmt.Errorf("wrk (apt-get install wrk; hack/test-deps.sh installs it): %w", err)
	}
	if bytes.Contains(out, []byte("Non-2xx")) {
		return 0, fmt.Errorf("wrk saw answers other than 2xx from %s", url)
	}
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, "Requests/sec:"); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no Requests/sec in wrk's output")
}
