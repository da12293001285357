package calllog

import (
	"encoding/json"
	"testing"
	"time"
)

// TestAppendJSON: the hand-written encoding is byte for byte encoding/json's,
// for plain values and for every kind of character a URL or header can
// carry, and reads back the same.
func TestAppendJSON(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC)
	entries := []Entry{
		{ID: "a", Time: at, Namespace: "ns", App: "app", Method: "GET", Path: "/x", Code: 200, DecidedBy: DecidedByTokenService, Source: SourceGateway},
		{ID: "b\"\\<>&", Time: at.Truncate(time.Second), Namespace: "ns", App: "app", Method: "POST", Host: "h", Path: "/\x00\x1f\n\r\t\u2028\u2029é日本\xff\xfe",
			Query: "q=%20&x=<script>", Route: "crm/r", RecordType: "contacts\"", RecordAction: "Merged", Code: 503, DecidedBy: DecidedByUpstream, Reason: "why", Latency: 1500 * time.Microsecond,
			Source: SourceKubernetes, Gateway: "edge-1", Final: true},
	}
	want, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	got := AppendJSON(nil, entries)
	if string(got) != string(want) {
		t.Fatalf("AppendJSON wrote\n%s\nencoding/json writes\n%s", got, want)
	}
	var back []Entry
	if err := json.Unmarshal(got, &back); err != nil || len(back) != 2 || back[0] != entries[0] {
		t.Fatalf("read back %+v, %v", back, err)
	}
	if string(AppendJSON(nil, nil)) != "[]" {
		t.Error("no entries is not []")
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	e := make([]Entry, 1000)
	for i := range e {
		e[i] = Entry{ID: "abcdef123456-1a2b", Time: time.Now(), Namespace: "ns-01", App: "app-00001", Method: "GET", Host: "api.example.com",
			Path: "/area7/v3/objects/type247/12345", Query: "properties=email", Code: 200, DecidedBy: DecidedByTokenService, Reason: ReasonAllowed, Source: SourceGateway}
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], e)
	}
}
