package tokenservice

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// TestConnectionsPerSource: one source address that holds its share of
// connections gets its next one closed at once, while another source is
// served; a slot comes back when its connection closes. Over real TCP on
// loopback, from two addresses (127.0.0.2 and 127.0.0.3).
func TestConnectionsPerSource(t *testing.T) {
	f := newFixture(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitPerSource(raw, 3)
	go func() { _ = Serve(t.Context(), ln, f.service, logr.Discard()) }()
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// answers reports whether a request on c is answered.
	answers := func(c net.Conn) bool {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		b := make([]byte, 12)
		n, _ := io.ReadFull(c, b)
		return n == 12 && string(b[:9]) == "HTTP/1.1 "
	}
	var held []net.Conn
	for range 3 {
		c := dial("127.0.0.2")
		if !answers(c) {
			t.Fatal("a connection within the source's share is not served")
		}
		held = append(held, c)
	}
	extra := dial("127.0.0.2")
	if answers(extra) {
		t.Error("a fourth connection of one source was served; want it closed at once")
	}
	extra.Close()
	other := dial("127.0.0.3")
	if !answers(other) {
		t.Error("another source is not served while the first holds its share")
	}
	other.Close()
	held[0].Close()
	ok := false
	for range 50 {
		c := dial("127.0.0.2")
		ok = answers(c)
		c.Close()
		if ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !ok {
		t.Error("a closed connection's slot did not come back")
	}
	for _, c := range held[1:] {
		c.Close()
	}
}
