// Package catalog decides which route of the platform's API catalogs a
// request matches, and so which scopes the call needs. It is pure: the token
// service, the APICatalog controller and the admission webhook each feed it
// the catalogs they read, and all three compute the same routes in force.
package catalog

import (
	"fmt"
	"strings"
)

// MaxTemplateLength bounds a path template.
const MaxTemplateLength = 1024

// segKind is what one segment of a path template matches.
type segKind uint8

const (
	// literal matches the same text, compared after the request's path is
	// decoded and cleaned.
	literal segKind = iota
	// param, written {name}, matches any one non-empty segment.
	param
	// rest, written {name...} as the last segment, matches the rest of the
	// path: zero or more segments, so /files/{path...} matches /files/ and
	// /files/a/b but not /files.
	rest
)

type segment struct {
	kind segKind
	text string // the literal, or the wildcard's name
}

// Template is a parsed path template such as /crm/v3/objects/contacts/{id}.
type Template struct {
	raw  string
	segs []segment
}

// String is the template as written.
func (t Template) String() string { return t.raw }

// ParseTemplate parses a path template. Segments are literals, {name} for
// one segment, or {name...} for the rest of the path (last segment only).
// Literals are written decoded: no percent-encoding, no "." or ".."
// segments, no empty segments except a final one (a trailing slash).
func ParseTemplate(s string) (Template, error) {
	const example = "; write it like /crm/v3/objects/contacts/{id} or /files/{path...}"
	switch {
	case s == "":
		return Template{}, fmt.Errorf("the path template is empty%s", example)
	case len(s) > MaxTemplateLength:
		return Template{}, fmt.Errorf("the path template is %d characters long; the limit is %d", len(s), MaxTemplateLength)
	case s[0] != '/':
		return Template{}, fmt.Errorf("the path template %q must start with /%s", s, example)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x21 || c == 0x7f:
			return Template{}, fmt.Errorf("the path template %q contains a space or control character at offset %d; write paths without them", s, i)
		case c == '%':
			return Template{}, fmt.Errorf("the path template %q contains %%: write it decoded (requests are decoded before they are matched)", s)
		case c == '?' || c == '#':
			return Template{}, fmt.Errorf("the path template %q contains %q: a template is a path only, without a query or fragment", s, c)
		case c == '\\':
			return Template{}, fmt.Errorf("the path template %q contains a backslash; separate segments with /", s)
		}
	}
	parts := strings.Split(s[1:], "/")
	t := Template{raw: s, segs: make([]segment, 0, len(parts))}
	names := map[string]bool{}
	for i, p := range parts {
		last := i == len(parts)-1
		switch {
		case p == "" && !last:
			return Template{}, fmt.Errorf("the path template %q has an empty segment (//); requests are matched with repeated slashes collapsed", s)
		case p == "." || p == "..":
			return Template{}, fmt.Errorf("the path template %q has a %q segment; requests are matched after . and .. are resolved, so write the resolved path", s, p)
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			name, isRest := strings.CutSuffix(p[1:len(p)-1], "...")
			if !validName(name) {
				return Template{}, fmt.Errorf("the path template %q has the wildcard %q: a name is a letter or _ followed by letters, digits or _, as in {id} or {path...}", s, p)
			}
			if names[name] {
				return Template{}, fmt.Errorf("the path template %q uses the wildcard name %q twice", s, name)
			}
			names[name] = true
			if isRest && !last {
				return Template{}, fmt.Errorf("the path template %q has %q before its end: {name...} matches the rest of the path, so it must be the last segment", s, p)
			}
			kind := param
			if isRest {
				kind = rest
			}
			t.segs = append(t.segs, segment{kind: kind, text: name})
		case strings.ContainsAny(p, "{}"):
			return Template{}, fmt.Errorf("the path template %q has the segment %q: a wildcard must be a whole segment, {name} or {name...}", s, p)
		default:
			t.segs = append(t.segs, segment{kind: literal, text: p})
		}
	}
	return t, nil
}

func validName(n string) bool {
	if n == "" {
		return false
	}
	for i, c := range n {
		if c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (i > 0 && '0' <= c && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// subsetOf reports whether every path t matches is also matched by u.
func (t Template) subsetOf(u Template) bool {
	for i, us := range u.segs {
		if i >= len(t.segs) {
			return false // t matches shorter paths than u does
		}
		if us.kind == rest {
			return true // u matches anything from here on
		}
		ts := t.segs[i]
		switch {
		case ts.kind == rest:
			return false // t matches longer paths than u's fixed length
		case us.kind == param && (ts.kind == param || ts.text != ""):
			continue // a param or a non-empty literal fits u's param
		case us.kind == literal && ts.kind == literal && us.text == ts.text:
			continue
		default:
			return false
		}
	}
	return len(t.segs) == len(u.segs)
}

// overlaps reports whether some path matches both t and u, and returns one.
func (t Template) overlaps(u Template) (string, bool) {
	var b strings.Builder
	for i := 0; ; i++ {
		// {name...} at i matches the paths with a segment i, which may
		// be empty, and anything after it.
		if i < len(t.segs) && t.segs[i].kind == rest {
			if i == len(u.segs) {
				return "", false
			}
			writeExample(&b, u.segs[i:])
			return b.String(), true
		}
		if i < len(u.segs) && u.segs[i].kind == rest {
			if i == len(t.segs) {
				return "", false
			}
			writeExample(&b, t.segs[i:])
			return b.String(), true
		}
		if i == len(t.segs) || i == len(u.segs) {
			return b.String(), len(t.segs) == len(u.segs)
		}
		ts, us := t.segs[i], u.segs[i]
		b.WriteByte('/')
		switch {
		case ts.kind == literal && us.kind == literal:
			if ts.text != us.text {
				return "", false
			}
			b.WriteString(ts.text)
		case ts.kind == literal:
			if ts.text == "" {
				return "", false // a param does not match an empty segment
			}
			b.WriteString(ts.text)
		case us.kind == literal:
			if us.text == "" {
				return "", false
			}
			b.WriteString(us.text)
		default:
			b.WriteString("x")
		}
	}
}

// writeExample writes a path that segs match; wildcards match "x".
func writeExample(b *strings.Builder, segs []segment) {
	for _, s := range segs {
		b.WriteByte('/')
		if s.kind == literal {
			b.WriteString(s.text)
		} else {
			b.WriteString("x")
		}
	}
}
