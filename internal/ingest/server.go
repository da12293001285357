package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// Paths of the ingest endpoints.
const (
	PathCalls     = "/ingest/v1/calls"
	PathAccessLog = "/ingest/v1/access-log"
	PathAudit     = "/ingest/v1/audit"
)

// Limits of one batch.
const (
	DefaultMaxBody    = 8 << 20
	DefaultMaxEntries = 10000
)

var droppedBatches = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "privateapps_calllog_ingest_batches_refused_total",
	Help: "Ingest requests refused whole, by reason (unauthorized, too_large, malformed).",
}, []string{"endpoint", "reason"})

// Collectors are the ingest metrics.
func Collectors() []prometheus.Collector { return []prometheus.Collector{droppedBatches} }

// Adder takes entries for the log without blocking (calllog.Queue).
type Adder interface{ Add(calllog.Entry) }

// Apps tells whether an app exists; reports of other apps are dropped.
type Apps interface {
	Exists(ctx context.Context, namespace, name string) bool
}

// CachedApps looks apps up in the manager's cache.
type CachedApps struct{ Reader client.Reader }

// Exists reports whether the PrivateApp is in the cache.
func (c CachedApps) Exists(ctx context.Context, namespace, name string) bool {
	return c.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &v1alpha1.PrivateApp{}) == nil
}

// Sender is a kind of sender. Each kind has its own credential and its
// own endpoint, and reports only what it can know: a gateway what the
// upstream answered, the kube-apiserver its own answers, a token-service
// replica its decisions. Whoever holds one kind's credential (a gateway's
// is in every syslog datagram, in clear) cannot post as another.
type Sender string

// The sender kinds. Each is also the common name of a client certificate
// that authenticates it.
const (
	SenderGateway      Sender = "gateway"
	SenderAudit        Sender = "audit"
	SenderTokenService Sender = "token-service"
)

// Senders are the kinds, in the order the docs give them.
var Senders = []Sender{SenderGateway, SenderAudit, SenderTokenService}

// senderOf is the one kind each endpoint takes.
var senderOf = map[string]Sender{PathAccessLog: SenderGateway, PathAudit: SenderAudit, PathCalls: SenderTokenService}

// MinSecretLength is the shortest shared secret a sender kind may have.
const MinSecretLength = 16

// CheckSecrets reports every problem of the kinds' shared secrets at once:
// one shorter than MinSecretLength, or two kinds with the same one (which
// would let either post as the other). A kind without a secret is fine: it
// authenticates by client certificate, or not at all.
func CheckSecrets(secrets map[Sender][]byte) error {
	var errs []error
	for i, a := range Senders {
		if n := len(secrets[a]); n > 0 && n < MinSecretLength {
			errs = append(errs, fmt.Errorf("the %s secret holds %d characters; a shared secret needs at least %d", a, n, MinSecretLength))
		}
		for _, b := range Senders[i+1:] {
			if len(secrets[a]) > 0 && subtle.ConstantTimeCompare(secrets[a], secrets[b]) == 1 {
				errs = append(errs, fmt.Errorf("the %s and %s secrets are the same; each sender kind needs its own, "+
					"or one can post as the other", a, b))
			}
		}
	}
	return errors.Join(errs...)
}

// Server answers the HTTP ingest endpoints. A sender is let in at its
// kind's endpoint by a client certificate the TLS listener verified
// (against the CA the operator issues from) whose common name is the kind,
// or by the kind's shared secret as a Bearer token.
type Server struct {
	Log  Adder
	Apps Apps
	// Secrets are each sender kind's shared secret; a kind without one
	// authenticates by client certificate only.
	Secrets map[Sender][]byte
	// Window says which times entries may carry (see calllog.InWindow);
	// others are dropped as out_of_window.
	Window Window
	// MaxBody and MaxEntries bound one request; bigger ones are refused
	// with 413 and counted (defaults DefaultMaxBody, DefaultMaxEntries).
	MaxBody    int64
	MaxEntries int
	Logger     logr.Logger
}

// Result is the answer to an ingest request.
type Result struct {
	Accepted int            `json:"accepted"`
	Dropped  map[string]int `json:"dropped,omitempty"`
}

// Handler serves the three endpoints.
func (s *Server) Handler() http.Handler {
	if s.MaxBody <= 0 {
		s.MaxBody = DefaultMaxBody
	}
	if s.MaxEntries <= 0 {
		s.MaxEntries = DefaultMaxEntries
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var read func(context.Context, []byte, *Result) error
		switch r.URL.Path {
		case PathCalls:
			read = s.calls
		case PathAccessLog:
			read = s.accessLog
		case PathAudit:
			read = s.audit
		default:
			http.Error(w, fmt.Sprintf("no such endpoint; POST to %s, %s or %s", PathCalls, PathAccessLog, PathAudit), http.StatusNotFound)
			return
		}
		endpoint := r.URL.Path[len("/ingest/v1/"):]
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		sender := senderOf[r.URL.Path]
		if code, msg := s.authorize(r, sender); code != 0 {
			droppedBatches.WithLabelValues(endpoint, "unauthorized").Inc()
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="privateapps-ingest"`)
			}
			http.Error(w, msg, code)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.MaxBody))
		if err != nil {
			droppedBatches.WithLabelValues(endpoint, "too_large").Inc()
			http.Error(w, fmt.Sprintf("the batch is over %d bytes; send smaller batches", s.MaxBody), http.StatusRequestEntityTooLarge)
			return
		}
		res := Result{Dropped: map[string]int{}}
		if err := read(r.Context(), body, &res); err != nil {
			var tooMany *tooManyError
			code, reason := http.StatusBadRequest, "malformed"
			if errors.As(err, &tooMany) {
				code, reason = http.StatusRequestEntityTooLarge, "too_large"
			}
			droppedBatches.WithLabelValues(endpoint, reason).Inc()
			http.Error(w, err.Error(), code)
			return
		}
		for reason, n := range res.Dropped {
			calllog.Dropped.WithLabelValues(reason).Add(float64(n))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
}

type tooManyError struct{ n, max int }

func (e *tooManyError) Error() string {
	return fmt.Sprintf("the batch holds %d entries; the most one request may hold is %d", e.n, e.max)
}

// authorize lets in r as sender, or says why not: 401 without sender's
// credential, 403 for a client certificate of another kind. A wrong
// secret is a 401 like no secret, whoever's it is.
func (s *Server) authorize(r *http.Request, sender Sender) (int, string) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		if cn := r.TLS.VerifiedChains[0][0].Subject.CommonName; cn != string(sender) {
			return http.StatusForbidden, fmt.Sprintf("the client certificate's common name is %q; %s takes only the %s sender, "+
				"whose certificate has the common name %q", cn, r.URL.Path, sender, sender)
		}
		return 0, ""
	}
	want := s.Secrets[sender]
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(want) > 0 && len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) &&
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[len(prefix):])), want) == 1 {
		return 0, ""
	}
	return http.StatusUnauthorized, fmt.Sprintf("%s takes the %s sender's credential: its shared secret as Authorization: Bearer <secret>, "+
		"or a client certificate of the operator's CA with the common name %q", r.URL.Path, sender, sender)
}

// Window is the span of times the log takes from senders: the days it
// keeps (Retention, calllog.DefaultRetention when zero), up to
// calllog.MaxFutureSkew ahead of Clock (the real clock when nil).
type Window struct {
	Retention time.Duration
	Clock     clock.PassiveClock
}

// Holds reports whether t is in the window now.
func (w Window) Holds(t time.Time) bool {
	c := w.Clock
	if c == nil {
		c = clock.RealClock{}
	}
	return calllog.InWindow(t, c.Now(), w.Retention)
}

// add queues an entry of a known app.
func (s *Server) add(ctx context.Context, e calllog.Entry, res *Result) {
	if !s.Window.Holds(e.Time) {
		res.Dropped[DropOutOfWindow]++
		return
	}
	if s.Apps != nil && !s.Apps.Exists(ctx, e.Namespace, e.App) {
		res.Dropped[DropUnknownApp]++
		return
	}
	s.Log.Add(e)
	res.Accepted++
}

// calls takes a JSON array of entries from a token-service replica.
func (s *Server) calls(ctx context.Context, body []byte, res *Result) error {
	var entries []calllog.Entry
	if err := json.Unmarshal(body, &entries); err != nil {
		return fmt.Errorf("the body must be a JSON array of call-log entries: %v", err)
	}
	if len(entries) > s.MaxEntries {
		return &tooManyError{len(entries), s.MaxEntries}
	}
	for _, e := range entries {
		if e.ID == "" || e.Namespace == "" || e.App == "" || !calllog.ValidCode(e.Code) {
			res.Dropped[DropMalformed]++
			continue
		}
		if !TokenServiceMayReport(&e) {
			res.Dropped[DropWrongSender]++
			continue
		}
		s.add(ctx, e, res)
	}
	return nil
}

// TokenServiceMayReport reports whether e is what a token-service replica
// decides: decided by the token service, a gateway's call, or a
// TokenReview of the kube-apiserver's. An entry claiming the
// kube-apiserver's or an upstream's answer is not the token service's to
// send.
func TokenServiceMayReport(e *calllog.Entry) bool {
	source := calllog.SourceGateway
	if e.Method == calllog.MethodTokenReview {
		source = calllog.SourceKubernetes
	}
	return e.DecidedBy == calllog.DecidedByTokenService && e.Source == source
}

// accessLog takes access-log lines, one JSON object per line.
func (s *Server) accessLog(ctx context.Context, body []byte, res *Result) error {
	if n := bytes.Count(body, []byte("\n")) + 1; n > s.MaxEntries+1 {
		return &tooManyError{n, s.MaxEntries}
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), int(s.MaxBody))
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		e, err := ParseAccessLine(line, nil)
		if err != nil {
			res.Dropped[Reason(err)]++
			continue
		}
		s.add(ctx, e, res)
	}
	return nil
}

// audit takes the kube-apiserver's audit webhook batch.
func (s *Server) audit(ctx context.Context, body []byte, res *Result) error {
	var list auditv1.EventList
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("the body must be an audit.k8s.io/v1 EventList: %v", err)
	}
	if len(list.Items) > s.MaxEntries {
		return &tooManyError{len(list.Items), s.MaxEntries}
	}
	for i := range list.Items {
		if e, ok := AuditEntry(&list.Items[i]); ok {
			s.add(ctx, e, res)
		}
	}
	return nil
}

// Syslog listens for access-log lines over UDP syslog, which is what nginx
// can send (access_log syslog:server=...). Each datagram is one line after
// the syslog header; it must carry the gateways' shared secret as "key".
type Syslog struct {
	Addr   string
	Key    []byte
	Log    Adder
	Apps   Apps
	Window Window
	Logger logr.Logger

	conn net.PacketConn
}

// Listen binds the socket, so that a bad address fails at start.
func (s *Syslog) Listen() error {
	if len(s.Key) == 0 {
		return errors.New("the syslog listener needs the gateways' shared secret (--call-log-gateway-token-file): gateways put it in each line as \"key\"")
	}
	c, err := net.ListenPacket("udp", s.Addr)
	if err != nil {
		return fmt.Errorf("syslog listener: %w", err)
	}
	s.conn = c
	return nil
}

// LocalAddr is the bound address.
func (s *Syslog) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// NeedLeaderElection is false: every replica takes what is sent to it.
func (s *Syslog) NeedLeaderElection() bool { return false }

// Start reads datagrams until ctx ends. A bad datagram is counted, never
// answered.
func (s *Syslog) Start(ctx context.Context) error {
	if s.conn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	go func() {
		<-ctx.Done()
		_ = s.conn.Close()
	}()
	s.Logger.Info("listening for gateway access logs over syslog", "address", s.conn.LocalAddr().String())
	buf := make([]byte, 64<<10)
	for {
		n, _, err := s.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.datagram(ctx, buf[:n])
	}
}

func (s *Syslog) datagram(ctx context.Context, b []byte) {
	i := bytes.IndexByte(b, '{')
	if i < 0 {
		calllog.Dropped.WithLabelValues(DropMalformed).Inc()
		return
	}
	e, err := ParseAccessLine(b[i:], s.Key)
	if err != nil {
		calllog.Dropped.WithLabelValues(Reason(err)).Inc()
		return
	}
	if !s.Window.Holds(e.Time) {
		calllog.Dropped.WithLabelValues(DropOutOfWindow).Inc()
		return
	}
	if s.Apps != nil && !s.Apps.Exists(ctx, e.Namespace, e.App) {
		calllog.Dropped.WithLabelValues(DropUnknownApp).Inc()
		return
	}
	s.Log.Add(e)
}
