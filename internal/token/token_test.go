package token

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strings"
	"testing"
)

func TestNewIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok, err := New()
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		s := tok.Reveal()
		if len(s) != Len || !strings.HasPrefix(s, Prefix) {
			t.Fatalf("token of length %d with prefix %q, want length %d and prefix %q", len(s), s[:4], Len, Prefix)
		}
		if _, err := Parse(s); err != nil {
			t.Fatalf("Parse(New()) = %v", err)
		}
		if seen[s] {
			t.Fatal("New returned the same token twice")
		}
		seen[s] = true
	}
}

func TestEntropyIsAtLeast256Bits(t *testing.T) {
	if bits := float64(entropyLen) * math.Log2(float64(len(alphabet))); bits < 256 {
		t.Fatalf("%d base62 characters carry %.2f bits, want at least 256", entropyLen, bits)
	}
}

// TestBase62CharIsUniform: over every byte value, each base62 character
// must come out equally often, and only the bytes that would bias it are
// refused.
func TestBase62CharIsUniform(t *testing.T) {
	counts := map[byte]int{}
	refused := 0
	for b := range 256 {
		c, ok := base62Char(byte(b))
		if !ok {
			refused++
			continue
		}
		counts[c]++
	}
	if len(counts) != len(alphabet) {
		t.Fatalf("saw %d distinct characters, want %d", len(counts), len(alphabet))
	}
	for c, n := range counts {
		if n != 256/len(alphabet) {
			t.Errorf("character %q comes from %d byte values, want %d", c, n, 256/len(alphabet))
		}
	}
	if refused != 256%len(alphabet) {
		t.Errorf("refused %d byte values, want %d", refused, 256%len(alphabet))
	}
}

func TestNewFailsWithoutRandomness(t *testing.T) {
	if _, err := newFrom(bytes.NewReader(make([]byte, 10))); err == nil {
		t.Fatal("New succeeded with 10 random bytes")
	}
}

func TestParse(t *testing.T) {
	good, err := New()
	if err != nil {
		t.Fatal(err)
	}
	g := good.Reveal()
	flip := func(i int) string {
		b := []byte(g)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"valid", g, nil},
		{"empty", "", ErrPrefix},
		{"bearer word left in", "Bearer " + g, ErrPrefix},
		{"other prefix", "ghp_" + g[4:], ErrPrefix},
		{"upper-case prefix", "PAT_" + g[4:], ErrPrefix},
		{"truncated", g[:Len-1], ErrLength},
		{"extra character", g + "a", ErrLength},
		{"trailing newline", g[:Len-1] + "\n", ErrAlphabet},
		{"dash inside", g[:10] + "-" + g[11:], ErrAlphabet},
		{"non-ASCII", g[:10] + "é" + g[12:], ErrAlphabet},
		{"typo in entropy", flip(20), ErrChecksum},
		{"typo in checksum", flip(Len - 1), ErrChecksum},
		{"swapped halves", Prefix + g[len(Prefix)+entropyLen:] + g[len(Prefix):len(Prefix)+entropyLen], ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), g[len(Prefix):]) {
				t.Fatal("the error message contains the token")
			}
			if err == nil && tok.Reveal() != tt.in {
				t.Fatal("Parse returned a different token")
			}
		})
	}
}

func TestDigest(t *testing.T) {
	a, _ := New()
	b, _ := New()
	if a.Digest() == b.Digest() {
		t.Fatal("two tokens have the same digest")
	}
	s := a.Digest().String()
	if !strings.HasPrefix(s, DigestPrefix) || len(s) != 71 {
		t.Fatalf("digest string %q, want sha256: and 64 hex digits", s)
	}
	if strings.Contains(s, a.Reveal()[len(Prefix):]) {
		t.Fatal("digest string contains the token")
	}
	back, err := ParseDigest(s)
	if err != nil || back != a.Digest() {
		t.Fatalf("ParseDigest(%q) = %v, %v; want the digest back", s, back, err)
	}
	// Known answers, computed with `printf %s TOKEN | sha256sum` and
	// python's zlib.crc32 (the token service and any outside tool must agree).
	const fixed = "pat_0000000000000000000000000000000000000000000"
	if got, want := checksumOf(fixed[len(Prefix):]), "2CZclj"; got != want {
		t.Fatalf("checksum of the all-zero entropy = %q, want %q", got, want)
	}
	tok, err := Parse(fixed + "2CZclj")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Digest().String(), "sha256:1fe49b9ee6b8ec2fb6bb5ae617423e69d1b664b8a85f048c22a7e3ff48410e9e"; got != want {
		t.Fatalf("digest = %q, want %q", got, want)
	}
}

func TestParseDigestRefusesMalformed(t *testing.T) {
	for _, s := range []string{"", "sha256:", "sha1:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("g", 64), "sha256:" + strings.Repeat("0", 63)} {
		if _, err := ParseDigest(s); err == nil {
			t.Errorf("ParseDigest(%q) succeeded", s)
		}
	}
}

func checksumOf(entropy string) string { return string(appendChecksum(nil, entropy)) }

func TestCRCMatchesTheStandardLibrary(t *testing.T) {
	for _, in := range []string{"", "a", strings.Repeat("0", 43), "The quick brown fox jumps over the lazy dog"} {
		if got, want := crcIEEE(in), crc32.ChecksumIEEE([]byte(in)); got != want {
			t.Errorf("crcIEEE(%q) = %08x, want %08x", in, got, want)
		}
	}
}

func TestParseAndDigestDoNotAllocate(t *testing.T) {
	tok, _ := New()
	s := tok.Reveal()
	allocs := testing.AllocsPerRun(100, func() {
		p, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Digest()
	})
	if allocs != 0 {
		t.Fatalf("Parse and Digest allocate %.0f times per call, want 0", allocs)
	}
}

func BenchmarkParseAndDigest(b *testing.B) {
	tok, _ := New()
	s := tok.Reveal()
	b.ReportAllocs()
	for b.Loop() {
		p, _ := Parse(s)
		_ = p.Digest()
	}
}

func TestRedact(t *testing.T) {
	tok, err := New()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"/crm/v3/objects/deals/1", "/crm/v3/objects/deals/1"},
		{"/tokens/" + tok.Reveal(), "/tokens/pat_[REDACTED]"},
		{"/a/" + tok.Reveal() + "/b/PAT_abc%20x", "/a/pat_[REDACTED]/b/pat_[REDACTED]"},
		{"/a/pat_abc%2", "/a/pat_[REDACTED]%2"},
		{tok.Reveal()[:20], "pat_[REDACTED]"},
		{"pat_", "pat_[REDACTED]"},
		{"spat_x", "spat_[REDACTED]"},
		{"/a/pat_abc%44ef%2Fg/h", "/a/pat_[REDACTED]/h"},
		{"pa", "pa"},
	}
	for i, tt := range tests {
		// Neither the input nor a wrong answer is printed: both may hold a token.
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("case %d: Redact did not give %q", i, tt.want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { _ = Redact("/crm/v3/objects/deals/1") }); n != 0 {
		t.Fatalf("Redact allocates %v times for text without a token", n)
	}
}

func TestTokenPrintsRedacted(t *testing.T) {
	tok, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{tok.String(), fmt.Sprint(tok), fmt.Sprintf("%v %s %q %+v %#v", tok, tok, tok, tok, tok),
		fmt.Sprintf("%v", struct{ T Token }{tok}), fmt.Errorf("wrapping %v", tok).Error()} {
		if strings.Contains(out, tok.Reveal()[len(Prefix):]) {
			t.Fatal("a printed Token holds its text")
		}
	}
	if !strings.HasPrefix(tok.Reveal(), Prefix) || len(tok.Reveal()) != Len {
		t.Fatal("Reveal does not return the token")
	}
}
