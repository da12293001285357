package notifytest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/notify"
)

// Receiver is a webhook endpoint that verifies each request's signature the
// way docs/appnotifications.md tells receivers to, and records the good ones.
type Receiver struct {
	*httptest.Server
	Secret []byte

	mu       sync.Mutex
	payloads []notify.Payload
	bad      []string
	failNext int
}

// StartReceiver starts a receiver on a loopback port.
func StartReceiver(secret []byte) *Receiver {
	r := &Receiver{Secret: secret}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := notify.Verify(r.Secret, req.Header.Get(notify.HeaderTimestamp), req.Header.Get(notify.HeaderSignature),
		body, time.Now(), 5*time.Minute); err != nil {
		r.bad = append(r.bad, err.Error())
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if r.failNext > 0 {
		r.failNext--
		http.Error(w, "busy, try later", http.StatusServiceUnavailable)
		return
	}
	var p notify.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if p.ID != req.Header.Get(notify.HeaderDelivery) {
		r.bad = append(r.bad, "delivery header does not match the body's id")
		http.Error(w, "id mismatch", http.StatusBadRequest)
		return
	}
	r.payloads = append(r.payloads, p)
	w.WriteHeader(http.StatusNoContent)
}

// Payloads are the verified deliveries so far.
func (r *Receiver) Payloads() []notify.Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Payload(nil), r.payloads...)
}

// Refused lists why requests with a bad signature were refused.
func (r *Receiver) Refused() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// FailNext makes the next n verified requests answer 503.
func (r *Receiver) FailNext(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext = n
}
