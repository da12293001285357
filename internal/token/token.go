// Package token defines the access token format: "pat_", 43 base62
// characters of crypto/rand entropy (256 bits) and a 6-character base62
// CRC-32 checksum of those 43 characters.
//
// The checksum lets Parse refuse a mistyped or truncated token before any
// lookup, and the fixed prefix and length let secret scanners match the
// format. Outside the Secret that holds it a token is only ever known by its
// SHA-256 digest.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unsafe"
)

const (
	// Prefix starts every token.
	Prefix = "pat_"
	// entropyLen base62 characters carry 43*log2(62) = 256.03 random bits.
	entropyLen = 43
	// checksumLen base62 characters hold any CRC-32 value (62^6 > 2^32).
	checksumLen = 6
	// Len is the length of every token.
	Len = len(Prefix) + entropyLen + checksumLen

	alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// rejectAbove keeps random bytes below the largest multiple of 62 that
	// fits in a byte, so that byte%62 is uniform.
	rejectAbove = 256 - 256%len(alphabet)

	// DigestPrefix starts every digest string.
	DigestPrefix = "sha256:"
)

// Errors returned by Parse. They never contain the text that was parsed.
var (
	ErrPrefix   = errors.New(`token does not start with "pat_"`)
	ErrLength   = fmt.Errorf("token is not %d characters long", Len)
	ErrAlphabet = errors.New("token has a character outside 0-9, A-Z and a-z after its prefix")
	ErrChecksum = errors.New("token checksum does not match: it was mistyped or truncated")
)

// Token is a parsed, well-formed access token. It prints redacted; Reveal
// returns the text.
type Token struct{ text string }

// New returns a fresh token with 256 bits from crypto/rand.
func New() (Token, error) { return newFrom(rand.Reader) }

func newFrom(random io.Reader) (Token, error) {
	buf := make([]byte, 0, Len)
	buf = append(buf, Prefix...)
	var scratch [64]byte
	for len(buf) < len(Prefix)+entropyLen {
		if _, err := io.ReadFull(random, scratch[:]); err != nil {
			return Token{}, fmt.Errorf("reading random bytes for a new token: %w", err)
		}
		for _, b := range scratch {
			c, ok := base62Char(b)
			if !ok {
				continue
			}
			buf = append(buf, c)
			if len(buf) == len(Prefix)+entropyLen {
				break
			}
		}
	}
	buf = appendChecksum(buf, string(buf[len(Prefix):]))
	return Token{text: string(buf)}, nil
}

// Parse checks the format and the checksum of s without any lookup.
func Parse(s string) (Token, error) {
	if len(s) < len(Prefix) || s[:len(Prefix)] != Prefix {
		return Token{}, ErrPrefix
	}
	if len(s) != Len {
		return Token{}, ErrLength
	}
	for i := len(Prefix); i < Len; i++ {
		if !isBase62(s[i]) {
			return Token{}, ErrAlphabet
		}
	}
	var want [checksumLen]byte
	encodeChecksum(want[:], s[len(Prefix):len(Prefix)+entropyLen])
	if string(want[:]) != s[len(Prefix)+entropyLen:] {
		return Token{}, ErrChecksum
	}
	return Token{text: s}, nil
}

// String returns Redacted, never the token: a Token that reaches a log line,
// an error or a %v prints nothing secret. Reveal returns the text.
func (t Token) String() string { return Redacted }

// GoString keeps %#v from printing the unexported text.
func (t Token) GoString() string { return "token.Token{" + Redacted + "}" }

// Reveal returns the token text. Only the code that writes the Secret (and
// tests that present a token) call it.
func (t Token) Reveal() string { return t.text }

// Digest returns the SHA-256 digest of the token. It does not allocate: the
// token service computes one per request.
func (t Token) Digest() Digest {
	var buf [Len]byte
	n := copy(buf[:], t.text)
	return Digest(sha256.Sum256(buf[:n]))
}

// Digest is the SHA-256 of a token: how everything outside the Secret
// refers to a token.
type Digest [sha256.Size]byte

// String renders the digest as "sha256:<64 hex digits>", the form in status.
func (d Digest) String() string { return DigestPrefix + hex.EncodeToString(d[:]) }

// ParseDigest reads the "sha256:<hex>" form written by Digest.String.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != len(DigestPrefix)+2*len(d) || s[:len(DigestPrefix)] != DigestPrefix {
		return d, fmt.Errorf("digest %q is not of the form sha256:<64 hex digits>", s)
	}
	if _, err := hex.Decode(d[:], []byte(s[len(DigestPrefix):])); err != nil {
		return d, fmt.Errorf("digest %q is not of the form sha256:<64 hex digits>: %w", s, err)
	}
	return d, nil
}

func appendChecksum(buf []byte, entropy string) []byte {
	var sum [checksumLen]byte
	encodeChecksum(sum[:], entropy)
	return append(buf, sum[:]...)
}

// encodeChecksum writes the CRC-32 (IEEE) of entropy as fixed-width base62.
func encodeChecksum(dst []byte, entropy string) {
	n := crcIEEE(entropy)
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = alphabet[n%uint32(len(alphabet))]
		n /= uint32(len(alphabet))
	}
}

// base62Char maps a random byte to a base62 character, refusing the bytes at
// or above rejectAbove so that every character is equally likely.
func base62Char(b byte) (byte, bool) {
	if int(b) >= rejectAbove {
		return 0, false
	}
	return alphabet[int(b)%len(alphabet)], true
}

// crcIEEE is crc32.ChecksumIEEE over a string (the hardware-assisted one),
// without copying it: ChecksumIEEE only reads its input.
func crcIEEE(s string) uint32 {
	return crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(s), len(s))) //nolint:gosec // G103: read only, never written or kept
}

func isBase62(c byte) bool { return base62[c] }

// base62 tells the bytes of the alphabet.
var base62 = func() (t [256]bool) {
	for c := range t {
		t[c] = ('0' <= c && c <= '9') || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z')
	}
	return t
}()

// Redacted replaces a token in text.
const Redacted = Prefix + "[REDACTED]"

// Redact replaces everything in s that looks like a token, "pat_" (in any
// case) followed by base62 characters, with Redacted, so that text a client
// sent can go into a message or a log. A mistyped or truncated token is
// redacted too. s is returned as is, without allocating, when it holds none.
func Redact(s string) string {
	i := indexPrefixFold(s, 0)
	if i < 0 {
		return s
	}
	var b []byte
	last := 0
	for ; i >= 0; i = indexPrefixFold(s, last) {
		end := runEnd(s, i+len(Prefix))
		b = append(b, s[last:i]...)
		b = append(b, Redacted...)
		last = end
	}
	b = append(b, s[last:]...)
	return string(b)
}

// runEnd is where the base62 run starting at i ends. A percent-encoded
// character is part of the run, so an encoded token is redacted whole.
func runEnd(s string, i int) int {
	for i < len(s) {
		switch {
		case isBase62(s[i]):
			i++
		case s[i] == '%' && i+2 < len(s) && isBase62(s[i+1]) && isBase62(s[i+2]):
			i += 3
		default:
			return i
		}
	}
	return i
}

// indexPrefixFold finds Prefix in s at or after from, ignoring case.
func indexPrefixFold(s string, from int) int {
	for i := from; i+len(Prefix) <= len(s); i++ {
		if (s[i] == 'p' || s[i] == 'P') && (s[i+1] == 'a' || s[i+1] == 'A') && (s[i+2] == 't' || s[i+2] == 'T') && s[i+3] == '_' {
			return i
		}
	}
	return -1
}
