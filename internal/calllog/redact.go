package calllog

import (
	"net/url"
	"strings"

	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// RedactedValue replaces a query value the log must not keep.
const RedactedValue = "REDACTED"

// DefaultSensitiveParams are query parameters whose values are redacted
// whatever they look like: the names APIs use for credentials.
var DefaultSensitiveParams = []string{
	"access_token", "api_key", "apikey", "client_secret", "code", "hapikey", "id_token", "key",
	"password", "refresh_token", "secret", "sig", "signature", "token",
}

// Redactor removes secrets from URLs before they are stored.
type Redactor struct {
	sensitive map[string]bool
}

// NewRedactor redacts DefaultSensitiveParams and the extra parameter names
// (compared without case).
func NewRedactor(extra ...string) *Redactor {
	r := &Redactor{sensitive: map[string]bool{}}
	for _, n := range append(append([]string{}, DefaultSensitiveParams...), extra...) {
		if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
			r.sensitive[n] = true
		}
	}
	return r
}

// Path redacts tokens from a path, as sent and as the server decodes it:
// a segment that holds a token once percent-decoded (pat%5F...) is
// replaced whole, and so is one that does not decode.
func (r *Redactor) Path(p string) string {
	p = token.Redact(p)
	if !strings.Contains(p, "%") {
		return p
	}
	segments := strings.Split(p, "/")
	for i, seg := range segments {
		if !strings.Contains(seg, "%") {
			continue
		}
		if dec, err := url.PathUnescape(seg); err != nil || token.Redact(dec) != dec {
			segments[i] = token.Redacted
		}
	}
	return strings.Join(segments, "/")
}

// Host is the host of a request as the log keeps it: without user info
// (user:password@ in an authority), tokens redacted, encoded ones too.
func (r *Redactor) Host(h string) string {
	if i := strings.LastIndexByte(h, '@'); i >= 0 {
		h = h[i+1:]
	}
	if dec, err := url.PathUnescape(h); err != nil || token.Redact(dec) != dec {
		return token.Redacted
	}
	return h
}

// Entry is e as the log may keep it: tokens and secrets redacted from its
// path, query, host and method, then normalized (Normalize).
func (r *Redactor) Entry(e Entry) Entry {
	e.Path, e.Query, e.Host, e.Method = r.Path(e.Path), r.Query(e.Query), r.Host(e.Host), token.Redact(e.Method)
	e.Normalize()
	return e
}

// Query redacts the values of sensitive parameters and values that look like
// credentials, keeping the rest as sent. Parameters are separated by & and
// by ; (which some servers also read as a separator), and names and values
// are judged decoded. A part that does not parse is redacted whole: the
// log cannot tell what it holds.
func (r *Redactor) Query(raw string) string {
	if raw == "" {
		return ""
	}
	var b strings.Builder
	for raw != "" {
		end := strings.IndexAny(raw, "&;")
		if end < 0 {
			end = len(raw)
		}
		part := raw[:end]
		name, value, hasValue := strings.Cut(part, "=")
		dn, err1 := url.QueryUnescape(name)
		dv, err2 := url.QueryUnescape(value)
		switch {
		case err1 != nil || err2 != nil:
			b.WriteString(RedactedValue)
		case token.Redact(name) == name && looksLikeSecret(dn):
			// A secret as a name that only its decoded form shows.
			b.WriteString(RedactedValue)
		case !hasValue:
			b.WriteString(token.Redact(name))
		case r.sensitive[strings.ToLower(dn)] || looksLikeSecret(dv):
			b.WriteString(token.Redact(name))
			b.WriteString("=" + RedactedValue)
		default:
			b.WriteString(token.Redact(part))
		}
		if end < len(raw) {
			b.WriteByte(raw[end])
			end++
		}
		raw = raw[end:]
	}
	return b.String()
}

// looksLikeSecret reports whether a value has the shape of a credential: a
// private app token, a JWT, or a long run of mixed-case letters and digits
// (an API key). Ids people search for (numbers, UUIDs, lower-case hex
// digests, words) are kept.
func looksLikeSecret(v string) bool {
	if strings.Contains(strings.ToLower(v), token.Prefix) {
		return true
	}
	if strings.HasPrefix(v, "eyJ") && strings.Count(v, ".") == 2 {
		return true
	}
	if len(v) < 32 {
		return false
	}
	var upper, lower, digit bool
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= '0' && c <= '9':
			digit = true
		case c == '-' || c == '_' || c == '.' || c == '~' || c == '+' || c == '/' || c == '=':
		default:
			return false
		}
	}
	return upper && lower && digit
}
