// Package calllog is the log of every API call of every app: its entries,
// the queries that read them and the Store interface its backends implement
// (calllog/sqlite, calllog/postgres), with the conformance suite they share
// in calllog/storetest. It imports nothing from Kubernetes.
//
// A call reaches the log from up to two places: the token service's decision
// (every /v1/check and TokenReview) and the report of whoever answered the
// client (a gateway's access log, the kube-apiserver's audit webhook). Both
// carry the call's correlation id, and a store keeps one entry per app and
// id, merged by the rules of Merge, so a call appears once, with the code the
// client got.
package calllog

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultRetention is how long entries are kept: HubSpot's 30 days.
const DefaultRetention = 30 * 24 * time.Hour

// Who decided the code a client got.
const (
	// DecidedByTokenService: the token service refused the call, or allowed
	// it and nobody has reported the upstream's answer (yet).
	DecidedByTokenService = "token-service"
	// DecidedByUpstream: the token service allowed the call and the gateway
	// reported what the upstream answered.
	DecidedByUpstream = "upstream"
	// DecidedByAPIServer: the kube-apiserver answered (audit webhook).
	DecidedByAPIServer = "kube-apiserver"
)

// Where a call came from.
const (
	SourceGateway    = "gateway"
	SourceKubernetes = "kubernetes"
)

// ReasonAllowed is the Reason of a call the token service allowed.
const ReasonAllowed = "allowed"

// ReasonNoGatewayReport is the Reason of a call the token service allowed
// for a gateway that reports its calls (Entry.Gateway), when the gateway's
// report did not arrive within the wait (Unreported): the 200 is the token
// service's, and what the client got is unknown. A late report still
// completes the entry.
const ReasonNoGatewayReport = "no_gateway_report"

// MethodTokenReview is the Method of a TokenReview: an authentication of an
// app by the kube-apiserver, not an API call (the API server caches its
// answers; the calls themselves come from the audit webhook).
const MethodTokenReview = "TOKENREVIEW"

// MethodIntrospect is the Method of an OAuth 2.0 token introspection: a
// resource server asking whether an app's token is active, not an API call
// (the resource server's own log has the calls).
const MethodIntrospect = "INTROSPECT"

// Limits on what one entry holds; longer values are cut.
const (
	MaxIDLength    = 128
	MaxPathLength  = 2048
	MaxQueryLength = 2048
	// MaxGatewayLength is the longest gateway name.
	MaxGatewayLength = 63
	maxShort         = 253
)

// Entry is one call of one app.
type Entry struct {
	// ID is the call's correlation id: the gateway's request id
	// (X-Request-Id), the audit ID, or one the token service made.
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Namespace string    `json:"namespace"`
	App       string    `json:"app"`
	Method    string    `json:"method"`
	Host      string    `json:"host,omitempty"`
	// Path is the request path as sent (percent-encoded), without the query.
	Path string `json:"path"`
	// Query is the query with secrets redacted (see Redactor).
	Query string `json:"query,omitempty"`
	// Route is the APICatalog route, "catalog/route", when one matched.
	Route string `json:"route,omitempty"`
	// RecordType and RecordAction are what the call does to a record when
	// it succeeds (2xx), for record insights: from the catalog route, or
	// the resource and verb of a Kubernetes API call. Empty for calls that
	// count as nothing.
	RecordType   string `json:"recordType,omitempty"`
	RecordAction string `json:"recordAction,omitempty"`
	// Code is the HTTP status the client got.
	Code      int    `json:"code"`
	DecidedBy string `json:"decidedBy"`
	// Reason says why the token service refused a call (missing_scope,
	// no_route, rate_limit_app, ...), or ReasonAllowed.
	Reason string `json:"reason,omitempty"`
	// Latency is how long the answer took, where known; zero is unknown.
	Latency time.Duration `json:"latency,omitempty"`
	Source  string        `json:"source"`
	// Gateway names the gateway whose access log will report the call
	// (the gateway parameter of its check URL), on an allowed check that
	// carries the gateway's request id; empty when no report is awaited.
	Gateway string `json:"gateway,omitempty"`
	// Final is set on entries that carry the code the client got: a token
	// service refusal, a gateway's report, an audit event. An allowed
	// check is not final: the upstream's answer is still to come.
	Final bool `json:"final,omitempty"`
}

// Day is the UTC day of the entry, as days since 1970-01-01: the unit of
// retention and of PostgreSQL's partitions.
func (e *Entry) Day() int64 { return DayOf(e.Time) }

// DayOf is the UTC day of t as days since 1970-01-01.
func DayOf(t time.Time) int64 {
	return t.UTC().Unix() / 86400
	// (Times before 1970 do not occur in a 30-day log.)
}

// MidnightWindow is how near a UTC midnight two reports of one call may
// fall on either side of it and still be one entry: the token service
// checks a call a few milliseconds after the gateway starts it, and the
// two can straddle midnight.
const MidnightWindow = time.Minute

// NeighbourDay is the day on the other side of the UTC midnight that e is
// within MidnightWindow of, where a report of the same call may already
// be kept; ok is false for an entry farther from midnight.
func (e *Entry) NeighbourDay() (day int64, ok bool) {
	d := e.Day()
	since := e.Time.Sub(StartOfDay(d))
	switch {
	case since < MidnightWindow:
		return d - 1, true
	case 24*time.Hour-since <= MidnightWindow:
		return d + 1, true
	}
	return 0, false
}

// StartOfDay is the UTC midnight that begins day.
func StartOfDay(day int64) time.Time { return time.Unix(day*86400, 0).UTC() }

// Normalize makes an entry fit every store: UTC time at millisecond
// precision, every text field valid UTF-8 without NUL bytes (PostgreSQL
// refuses both, and one refused row would hold back its batch), cut to its
// limit on a character boundary.
func (e *Entry) Normalize() {
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
	e.ID = text(e.ID, MaxIDLength)
	e.Namespace, e.App, e.Host = text(e.Namespace, maxShort), text(e.App, maxShort), text(e.Host, maxShort)
	e.Method, e.Route, e.Reason = text(e.Method, 32), text(e.Route, 2*maxShort+1), text(e.Reason, 64)
	e.RecordType, e.RecordAction = text(e.RecordType, maxShort), text(e.RecordAction, 16)
	e.Gateway, e.DecidedBy, e.Source = text(e.Gateway, MaxGatewayLength), text(e.DecidedBy, 32), text(e.Source, 32)
	e.Path, e.Query = text(e.Path, MaxPathLength), text(e.Query, MaxQueryLength)
	if e.Latency < 0 {
		e.Latency = 0
	}
}

// text is s as valid UTF-8 without NUL bytes (a NUL, or a run of bytes
// that are not UTF-8, becomes U+FFFD), cut to at most n bytes without
// splitting a character.
func text(s string, n int) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ValidCode reports whether code is an HTTP status code, as an entry must
// carry.
func ValidCode(code int) bool { return code >= 100 && code <= 599 }

// Merge is the entry a store keeps when a second report of the same call
// (same namespace, app and id, on the same UTC day or, within
// MidnightWindow of the midnight between, the neighbouring one) arrives.
// The entry stays under the day of the first report. The first final report decides the
// code, who decided it and why; an allowed check is replaced by the
// gateway's report of the upstream's answer. Blank fields are filled from
// either report, and the earlier time is kept. Backends implement these
// rules in their own terms; the conformance suite checks them against this
// function.
func Merge(old, new Entry) Entry {
	out := old
	if !old.Final && new.Final {
		out.Code, out.DecidedBy, out.Reason, out.Source, out.Final = new.Code, new.DecidedBy, new.Reason, new.Source, true
		if new.Latency > 0 {
			out.Latency = new.Latency
		}
	}
	if out.Latency == 0 {
		out.Latency = new.Latency
	}
	if new.Time.Before(out.Time) {
		out.Time = new.Time
	}
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	fill(&out.Method, new.Method)
	fill(&out.Host, new.Host)
	fill(&out.Path, new.Path)
	fill(&out.Query, new.Query)
	fill(&out.Route, new.Route)
	fill(&out.Gateway, new.Gateway)
	if out.RecordType == "" {
		out.RecordType, out.RecordAction = new.RecordType, new.RecordAction
	}
	return out
}

// AwaitsReport reports whether e is an allowed check whose gateway's report
// has not arrived (yet): what Unreported marks once it is overdue.
func (e *Entry) AwaitsReport() bool {
	return !e.Final && e.Gateway != "" && e.Reason == ReasonAllowed
}

// MarkUnreported is the reference of Store.MarkUnreported for one entry:
// an entry that awaits a report and is older than before gets
// ReasonNoGatewayReport; it reports whether e changed.
func MarkUnreported(e *Entry, before time.Time) bool {
	if !e.AwaitsReport() || !e.Time.Before(before) {
		return false
	}
	e.Reason = ReasonNoGatewayReport
	return true
}

// Query selects entries, newest first.
type Query struct {
	// Namespace is the namespace of the apps; empty is every namespace.
	Namespace string
	App       string
	Method    string
	// Code is an exact status code; CodeClass a class (4 is 4xx). At most
	// one of them is set.
	Code      int
	CodeClass int
	// From is inclusive, To exclusive; zero is unbounded.
	From, To time.Time
	// URLContains is a substring of the path and query ("path?query").
	URLContains string
	// Reason is an exact reason (missing_scope, no_gateway_report, ...).
	Reason string
	// Limit is the most entries a page holds (1 to MaxLimit).
	Limit int
	// Continue is the previous page's Continue.
	Continue string
}

// Limits of a query.
const (
	DefaultLimit = 500
	MaxLimit     = 5000
)

// Page is one page of a query's answer.
type Page struct {
	Entries []Entry
	// Continue reads the next page; empty when this page is the last.
	Continue string
}

// ErrInvalidContinue is returned for a Continue that no page gave.
var ErrInvalidContinue = errors.New("the continue token is not one this log gave out; start the list again without it")

// Cursor is where a page ends: the sort key of its last entry. Entries
// sort newest first by time, then by id, namespace and app, descending.
type Cursor struct {
	TimeMillis     int64
	Namespace, App string
	ID             string
}

// After reports whether e sorts after the cursor, that is, belongs to a
// later page.
func (c Cursor) After(e Entry) bool {
	ms := e.Time.UnixMilli()
	if ms != c.TimeMillis {
		return ms < c.TimeMillis
	}
	if e.ID != c.ID {
		return e.ID < c.ID
	}
	if e.Namespace != c.Namespace {
		return e.Namespace < c.Namespace
	}
	return e.App < c.App
}

// EncodeCursor makes a Continue token of the last entry of a page.
func EncodeCursor(e Entry) string {
	s := strconv.FormatInt(e.Time.UnixMilli(), 10) + "/" + e.Namespace + "/" + e.App + "/" + e.ID
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// DecodeCursor reads a Continue token.
func DecodeCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, ErrInvalidContinue
	}
	parts := strings.SplitN(string(b), "/", 4)
	if len(parts) != 4 || len(parts[3]) > MaxIDLength {
		return Cursor{}, ErrInvalidContinue
	}
	ms, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return Cursor{}, ErrInvalidContinue
	}
	return Cursor{TimeMillis: ms, Namespace: parts[1], App: parts[2], ID: parts[3]}, nil
}

// Check validates a query and fills in its default limit.
func (q *Query) Check() error {
	switch {
	case q.Limit == 0:
		q.Limit = DefaultLimit
	case q.Limit < 0 || q.Limit > MaxLimit:
		return fmt.Errorf("limit must be between 1 and %d", MaxLimit)
	}
	if q.Code != 0 && q.CodeClass != 0 {
		return errors.New("give a code or a class of codes, not both")
	}
	if q.Code != 0 && (q.Code < 100 || q.Code > 599) {
		return fmt.Errorf("code %d is not an HTTP status code (100 to 599)", q.Code)
	}
	if q.CodeClass != 0 && (q.CodeClass < 1 || q.CodeClass > 5) {
		return fmt.Errorf("code class %dxx is not one of 1xx to 5xx", q.CodeClass)
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return errors.New("the time range is empty: since must be before until")
	}
	if q.Continue != "" {
		if _, err := DecodeCursor(q.Continue); err != nil {
			return err
		}
	}
	return nil
}

// Matches reports whether e is selected by q's filters (not its paging):
// the reference the conformance suite checks backends against.
func (q *Query) Matches(e Entry) bool {
	switch {
	case q.Namespace != "" && e.Namespace != q.Namespace,
		q.App != "" && e.App != q.App,
		q.Method != "" && e.Method != q.Method,
		q.Code != 0 && e.Code != q.Code,
		q.CodeClass != 0 && e.Code/100 != q.CodeClass,
		!q.From.IsZero() && e.Time.Before(q.From),
		!q.To.IsZero() && !e.Time.Before(q.To),
		q.URLContains != "" && !strings.Contains(e.Path+"?"+e.Query, q.URLContains),
		q.Reason != "" && e.Reason != q.Reason:
		return false
	}
	return true
}

// Writer takes batches of entries: a Store, or a client that sends them to
// the process holding the store.
type Writer interface {
	Write(ctx context.Context, entries []Entry) error
}

// Store keeps the log.
type Store interface {
	Writer
	// List answers a query, newest first (by time, then id).
	List(ctx context.Context, q Query) (Page, error)
	// CountRecords counts the calls of q's days that succeeded and name a
	// record type and action, per namespace, app, day, record type and
	// action, in CompareRecordCounts order.
	CountRecords(ctx context.Context, q RecordQuery) ([]RecordCount, error)
	// DropBefore removes every entry of the UTC days before day.
	DropBefore(ctx context.Context, day int64) error
	// MarkUnreported gives every entry that awaits a gateway's report
	// (Entry.AwaitsReport) and is older than before the reason
	// ReasonNoGatewayReport, and returns how many it marked per gateway.
	// Several replicas may mark at once; each entry is counted by one.
	MarkUnreported(ctx context.Context, before time.Time) (map[string]int, error)
	Close() error
}

// Rows is what CountGateways reads: database/sql's and pgx's rows alike.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// CountGateways counts rows of one gateway name each, per name: what a
// backend's MarkUnreported returns.
func CountGateways(rows Rows) (map[string]int, error) {
	counts := map[string]int{}
	for rows.Next() {
		var gateway string
		if err := rows.Scan(&gateway); err != nil {
			return nil, fmt.Errorf("call log: marking calls without a gateway report: %w", err)
		}
		counts[gateway]++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("call log: marking calls without a gateway report: %w", err)
	}
	return counts, nil
}
