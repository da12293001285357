// Package ingest takes call reports from outside the operator into the call
// log: gateway access logs (JSON lines over syslog or HTTP), the
// kube-apiserver's audit webhook, and the token-service replicas' own
// decisions. Every sender is authenticated; what cannot be read, names no
// known app or is too big is dropped and counted, never retried against
// the sender and never allowed to stall the listener.
package ingest

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// AccessLine is one gateway access-log line, the JSON object the docs give
// nginx's log_format (docs/calllog.md#gateways). Other gateways that log
// JSON over the network send the same fields.
type AccessLine struct {
	// Key is the gateways' shared secret, for senders that cannot
	// authenticate otherwise (nginx's syslog is plain UDP).
	Key string `json:"key"`
	// Time is when the request ended: seconds since the epoch with
	// milliseconds (nginx $msec), or RFC 3339.
	Time json.RawMessage `json:"time"`
	// ID is the request id the gateway also sent the token service
	// (nginx $request_id in X-Request-Id).
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	Method    string `json:"method"`
	Host      string `json:"host"`
	// URI is the request's path and query (nginx $request_uri).
	URI    string          `json:"uri"`
	Status json.RawMessage `json:"status"`
	// Duration is how long the request took, in seconds (nginx
	// $request_time).
	Duration json.RawMessage `json:"duration"`
}

// Reasons an access line is dropped, as the drop metric's labels.
const (
	DropMalformed  = "malformed"
	DropNoApp      = "no_app"
	DropUnknownApp = "unknown_app"
	DropBadKey     = "bad_key"
	DropTooLarge   = "too_large"
	// DropOutOfWindow: a time before the days the log keeps, or more
	// than calllog.MaxFutureSkew ahead of the receiver's clock.
	DropOutOfWindow = "out_of_window"
	// DropWrongSender: an entry its sender could not have decided (a
	// token-service batch claiming the kube-apiserver's answer).
	DropWrongSender = "wrong_sender"
)

// dropError is a reason to drop a line, with what was wrong.
type dropError struct{ reason, msg string }

func (e *dropError) Error() string { return e.msg }

// Reason is the drop metric's label of err.
func Reason(err error) string {
	var d *dropError
	if errors.As(err, &d) {
		return d.reason
	}
	return DropMalformed
}

func drop(reason, format string, args ...any) error {
	return &dropError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// ParseAccessLine reads one line. key, when not empty, is the gateways'
// shared secret the line must carry.
func ParseAccessLine(b []byte, key []byte) (calllog.Entry, error) {
	var l AccessLine
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&l); err != nil {
		return calllog.Entry{}, drop(DropMalformed, "not a JSON object: %v", err)
	}
	if len(key) > 0 && subtle.ConstantTimeCompare([]byte(l.Key), key) != 1 {
		return calllog.Entry{}, drop(DropBadKey, "the line's key is not the gateways' shared secret")
	}
	// A gateway logs "" (or "-") for the app of a call the token service
	// refused: the token service logged that one itself.
	if l.Namespace == "" || l.App == "" || l.Namespace == "-" || l.App == "-" {
		return calllog.Entry{}, drop(DropNoApp, "the line names no app")
	}
	end, err := parseTime(l.Time)
	if err != nil {
		return calllog.Entry{}, drop(DropMalformed, "time: %v", err)
	}
	status, err := parseNumber(l.Status)
	if err != nil || status < 100 || status > 599 || status != math.Trunc(status) {
		return calllog.Entry{}, drop(DropMalformed, "status %s is not an HTTP status code", l.Status)
	}
	var took time.Duration
	if len(l.Duration) > 0 && string(l.Duration) != `""` && string(l.Duration) != `"-"` {
		secs, err := parseNumber(l.Duration)
		if err != nil || secs < 0 || secs > 86400 {
			return calllog.Entry{}, drop(DropMalformed, "duration %s is not a number of seconds", l.Duration)
		}
		took = time.Duration(secs * float64(time.Second))
	}
	if l.ID == "" || l.Method == "" || l.URI == "" {
		return calllog.Entry{}, drop(DropMalformed, "id, method and uri are required")
	}
	path, query, _ := strings.Cut(l.URI, "?")
	return calllog.Entry{
		ID: l.ID, Time: end.Add(-took), Namespace: l.Namespace, App: l.App, Method: strings.ToUpper(l.Method), Host: l.Host,
		Path: path, Query: query, Code: int(status), DecidedBy: calllog.DecidedByUpstream, Latency: took,
		Source: calllog.SourceGateway, Final: true,
	}, nil
}

// parseTime reads seconds since the epoch (a number, or a string of one)
// or an RFC 3339 string.
func parseTime(raw json.RawMessage) (time.Time, error) {
	if n, err := parseNumber(raw); err == nil {
		if n < 1e9 || n > 1e11 {
			return time.Time{}, fmt.Errorf("%s is not seconds since 1970", raw)
		}
		sec, frac := math.Modf(n)
		return time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC(), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, fmt.Errorf("%s is neither seconds since 1970 nor RFC 3339", raw)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither seconds since 1970 nor RFC 3339", s)
	}
	return t.UTC(), nil
}

// parseNumber reads a JSON number or a string holding one (nginx logs
// variables as strings unless the format leaves the quotes out).
func parseNumber(raw json.RawMessage) (float64, error) {
	s := strings.TrimSpace(string(raw))
	if unq, err := strconv.Unquote(s); err == nil {
		s = unq
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, errors.New("not a number")
	}
	return n, nil
}
