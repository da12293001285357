package tokenservice

import (
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

var connectionsRefused = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "privateapps_token_service_connections_refused_total",
	Help: "Connections closed at once because their source address already held --token-service-max-connections-per-source.",
})

// perSourceListener closes at once a connection whose source address
// already holds max open connections, so that one client cannot take
// every slot of the token service's connection bound (gateways that open a
// connection per check would then get no answer). The source is the peer's
// IP address, never a header.
type perSourceListener struct {
	net.Listener
	max int

	mu   sync.Mutex
	open map[string]int
}

// limitPerSource bounds the connections each source address holds on ln;
// max <= 0 is no bound.
func limitPerSource(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		return ln
	}
	return &perSourceListener{Listener: ln, max: max, open: map[string]int{}}
}

func (l *perSourceListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		source := sourceOfAddr(c.RemoteAddr())
		l.mu.Lock()
		if l.open[source] >= l.max {
			l.mu.Unlock()
			connectionsRefused.Inc()
			_ = c.Close()
			continue
		}
		l.open[source]++
		l.mu.Unlock()
		return &slotConn{Conn: c, release: func() { l.release(source) }}, nil
	}
}

func (l *perSourceListener) release(source string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[source]--; l.open[source] <= 0 {
		delete(l.open, source)
	}
}

// slotConn gives its slot back once, when it is closed.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func sourceOfAddr(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
