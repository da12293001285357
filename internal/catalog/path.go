package catalog

import (
	"bytes"
	"fmt"
	"strings"
)

// MaxPathLength bounds the request paths the matcher reads.
const MaxPathLength = 8 << 10

// PathError says why a request path cannot be matched against routes. Such a
// path is refused: matching it some way would guess at how the upstream reads
// it.
type PathError struct {
	Path    string
	Problem string
}

func (e *PathError) Error() string {
	p := e.Path
	if len(p) > 200 {
		p = p[:200] + "..."
	}
	return fmt.Sprintf("the request path %q %s", p, e.Problem)
}

// CleanPath returns the form of a request path that routes are matched
// against: percent-encoding decoded, repeated slashes collapsed, "." and ".."
// segments resolved, a trailing slash kept. A path already in that form is
// returned as is, without allocating. A path that different upstreams could
// read differently is an error: an encoded /, \ or %, a raw \ or ;, a control
// character, a malformed escape, a ".." above the root, or one longer than
// MaxPathLength.
func CleanPath(p string) (string, error) {
	if len(p) > MaxPathLength {
		return "", &PathError{Path: p, Problem: fmt.Sprintf("is %d bytes long; the limit is %d", len(p), MaxPathLength)}
	}
	if p == "" || p[0] != '/' {
		return "", &PathError{Path: p, Problem: "does not start with /"}
	}
	if isClean(p) {
		return p, nil
	}
	decoded := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", &PathError{Path: p, Problem: "has a malformed percent-encoding: % must be followed by two hex digits"}
			}
			c = unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			switch c {
			case '/', '\\':
				return "", &PathError{Path: p, Problem: "has an encoded / or \\ (%2F, %5C), which upstreams read differently; send the path without it"}
			case '%':
				return "", &PathError{Path: p, Problem: "has an encoded % (%25), which upstreams that decode twice read differently; send the path without it"}
			}
		} else if c == '\\' {
			return "", &PathError{Path: p, Problem: "has a backslash, which some upstreams read as /; send the path without it"}
		}
		if c == ';' {
			return "", &PathError{Path: p, Problem: "has a ; (path parameters), which some upstreams strip from each segment; send the path without it"}
		}
		if c < 0x20 || c == 0x7f {
			return "", &PathError{Path: p, Problem: "has a control character"}
		}
		decoded = append(decoded, c)
	}
	// Resolve segments: out holds the cleaned path so far, without a
	// trailing slash; a trailing slash is added back at the end.
	out := make([]byte, 0, len(decoded))
	segs := strings.Split(string(decoded[1:]), "/")
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "", ".":
			trailing = last
		case "..":
			j := bytes.LastIndexByte(out, '/')
			if j < 0 {
				return "", &PathError{Path: p, Problem: "goes above the root with .."}
			}
			out = out[:j]
			trailing = last
		default:
			out = append(out, '/')
			out = append(out, s...)
			trailing = false
		}
	}
	if trailing || len(out) == 0 {
		out = append(out, '/')
	}
	return string(out), nil
}

// isClean reports whether p is already in the form CleanPath returns.
func isClean(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '%' || c == '\\' || c == ';' || c < 0x20 || c == 0x7f:
			return false
		case c == '/' && i > 0:
			// The segment that ends here must not be empty, "." or "..".
			if p[i-1] == '/' || p[i-1] == '.' && (p[i-2] == '/' || p[i-2] == '.' && p[i-3] == '/') {
				return false
			}
		}
	}
	// The last segment.
	n := len(p)
	return !(n >= 2 && p[n-1] == '.' && (p[n-2] == '/' || n >= 3 && p[n-2] == '.' && p[n-3] == '/'))
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
