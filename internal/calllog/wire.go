package calllog

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the entries as a JSON array, the body a token-service
// replica sends to the insights component. It writes what encoding/json
// writes for []Entry (and reads back), about six times faster: the
// replica encodes every call it answers.
func AppendJSON(b []byte, entries []Entry) []byte {
	b = append(b, '[')
	for i := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		e := &entries[i]
		b = append(b, `{"id":`...)
		b = appendString(b, e.ID)
		b = append(b, `,"time":"`...)
		b = e.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","namespace":`...)
		b = appendString(b, e.Namespace)
		b = append(b, `,"app":`...)
		b = appendString(b, e.App)
		b = append(b, `,"method":`...)
		b = appendString(b, e.Method)
		if e.Host != "" {
			b = append(b, `,"host":`...)
			b = appendString(b, e.Host)
		}
		b = append(b, `,"path":`...)
		b = appendString(b, e.Path)
		if e.Query != "" {
			b = append(b, `,"query":`...)
			b = appendString(b, e.Query)
		}
		if e.Route != "" {
			b = append(b, `,"route":`...)
			b = appendString(b, e.Route)
		}
		if e.RecordType != "" {
			b = append(b, `,"recordType":`...)
			b = appendString(b, e.RecordType)
		}
		if e.RecordAction != "" {
			b = append(b, `,"recordAction":`...)
			b = appendString(b, e.RecordAction)
		}
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(e.Code), 10)
		b = append(b, `,"decidedBy":`...)
		b = appendString(b, e.DecidedBy)
		if e.Reason != "" {
			b = append(b, `,"reason":`...)
			b = appendString(b, e.Reason)
		}
		if e.Latency != 0 {
			b = append(b, `,"latency":`...)
			b = strconv.AppendInt(b, int64(e.Latency), 10)
		}
		b = append(b, `,"source":`...)
		b = appendString(b, e.Source)
		if e.Gateway != "" {
			b = append(b, `,"gateway":`...)
			b = appendString(b, e.Gateway)
		}
		if e.Final {
			b = append(b, `,"final":true`...)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string; bytes that are not UTF-8 become
// U+FFFD, as encoding/json does.
// plainJSON tells the ASCII bytes appendString copies as they are: not
// control characters, quotes, backslashes, or the HTML characters
// encoding/json escapes.
var plainJSON = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plainJSON[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
