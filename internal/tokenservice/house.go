package tokenservice

import (
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var connectionsShed = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "privateapps_token_service_connections_shed_total",
	Help: "Connections the token service closed near --token-service-max-connections to make room, by state: idle (a kept-alive connection between requests) or silent (no request a second after it was accepted).",
}, []string{"state"})

// connPhase is what a connection is doing, as the server reports it.
type connPhase int

const (
	phaseNew    connPhase = iota // accepted, no request read yet
	phaseActive                  // a request is being read or answered
	phaseIdle                    // kept alive between requests
)

func phaseOf(isNew, idle bool) connPhase {
	switch {
	case isNew:
		return phaseNew
	case idle:
		return phaseIdle
	}
	return phaseActive
}

// silentAfter is how long a new connection may send nothing before it is
// shed near the bound: gateways send their request as soon as they have
// connected (and finished the TLS handshake).
const silentAfter = time.Second

// house bounds the connections served at once. Near its bound (seven
// eighths of it) it sheds the connections that hold a slot without a
// request under way: idle kept-alive connections, and connections that
// have sent no request a second after they were accepted. A client may
// then hold a slot only while a request of its is read or answered,
// which the server's timeouts bound, instead of for the 90 s a kept-alive
// connection may idle: one check per connection, held open, no longer
// fills the house. At the bound itself, accepting waits for a slot (the
// connection waits in the listen backlog), shedding again as connections
// fall silent.
//
// The listener counts slots; the server reports each connection's phase
// through connState, keyed by the connection they serve (the TLS
// connection over TLS), which is also the one shedding closes.
type house struct {
	net.Listener
	max, high int
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	now       func() time.Time

	mu    sync.Mutex
	conns map[net.Conn]*connRecord
}

type connRecord struct {
	phase connPhase
	since time.Time
}

// newHouse bounds ln at max connections; max <= 0 is no bound (nil).
func newHouse(ln net.Listener, max int) *house {
	if max <= 0 {
		return nil
	}
	return &house{Listener: ln, max: max, high: max - max/8, slots: make(chan struct{}, max),
		done: make(chan struct{}), now: time.Now, conns: map[net.Conn]*connRecord{}}
}

// Accept takes a slot, waiting for one at the bound, then a connection.
func (h *house) Accept() (net.Conn, error) {
	if !h.acquire() {
		return nil, net.ErrClosed
	}
	c, err := h.Listener.Accept()
	if err != nil {
		<-h.slots
		return nil, err
	}
	if h.nearBound() {
		h.shed()
	}
	return &slotConn{Conn: c, release: func() { <-h.slots }}, nil
}

// acquire takes a slot, shedding while it waits; it reports false once
// the listener is closed.
func (h *house) acquire() bool {
	select {
	case h.slots <- struct{}{}:
		return true
	default:
	}
	tick := time.NewTicker(silentAfter / 4)
	defer tick.Stop()
	for {
		h.shed()
		select {
		case h.slots <- struct{}{}:
			return true
		case <-h.done:
			return false
		case <-tick.C:
		}
	}
}

func (h *house) Close() error {
	h.closeOnce.Do(func() { close(h.done) })
	return h.Listener.Close()
}

func (h *house) nearBound() bool { return len(h.slots) >= h.high }

// shed closes the connections that hold a slot without a request under
// way.
func (h *house) shed() {
	now := h.now()
	h.mu.Lock()
	var idle, silent []net.Conn
	for c, r := range h.conns {
		switch {
		case r.phase == phaseIdle:
			idle = append(idle, c)
		case r.phase == phaseNew && now.Sub(r.since) >= silentAfter:
			silent = append(silent, c)
		default:
			continue
		}
		delete(h.conns, c) // closed below, and counted once
	}
	h.mu.Unlock()
	h.close(idle, "idle")
	h.close(silent, "silent")
}

func (h *house) close(conns []net.Conn, state string) {
	for _, c := range conns {
		_ = c.Close()
	}
	if len(conns) > 0 {
		connectionsShed.WithLabelValues(state).Add(float64(len(conns)))
	}
}

// connState records a connection's phase as the server reports it, and
// closes a connection that falls idle while the house is near its bound;
// closed reports that it has gone.
func (h *house) connState(c net.Conn, phase connPhase, closed bool) {
	h.mu.Lock()
	if closed {
		delete(h.conns, c)
		h.mu.Unlock()
		return
	}
	r := h.conns[c]
	if r == nil {
		r = &connRecord{}
		h.conns[c] = r
	}
	r.phase, r.since = phase, h.now()
	shed := phase == phaseIdle && h.nearBound()
	if shed {
		delete(h.conns, c)
	}
	h.mu.Unlock()
	if shed {
		h.close([]net.Conn{c}, "idle")
	}
}
