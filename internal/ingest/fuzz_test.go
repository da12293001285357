package ingest

import (
	"testing"
)

// FuzzAccessLine: whatever a gateway (or anyone who reaches the syslog
// port) sends, parsing never panics, and what it accepts is an entry the
// store can take: an app, a status code, a non-negative latency, and the
// shared secret when one is set.
func FuzzAccessLine(f *testing.F) {
	f.Add([]byte(`{"key":"0123456789abcdef","time":"1764000000.250","id":"r1","namespace":"team-a","app":"crm","method":"GET","uri":"/x?y=1","status":"502","duration":"0.050"}`))
	f.Add([]byte(`{"time":"2026-11-24T10:00:00Z","id":"x","namespace":"n","app":"a","method":"POST","uri":"/p","status":201,"duration":1e308}`))
	f.Add([]byte(`{"time":1e400,"status":-1}`))
	f.Add([]byte(`<190>Nov 24 05:23:34 host privateapps: {"id":"\u0000"}`))
	key := []byte("0123456789abcdef")
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, k := range [][]byte{nil, key} {
			e, err := ParseAccessLine(line, k)
			if err != nil {
				continue
			}
			if e.Namespace == "" || e.App == "" || e.ID == "" || e.Code < 100 || e.Code > 599 || e.Latency < 0 {
				t.Fatalf("accepted %q as %+v", line, e)
			}
		}
	})
}
