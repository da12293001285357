package token

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, accepts only well-formed tokens,
// and never puts the input into an error message.
func FuzzParse(f *testing.F) {
	good, _ := New()
	for _, seed := range []string{"", "pat_", good.Reveal(), good.Reveal()[:Len-1], "Bearer " + good.Reveal(), strings.Repeat("a", Len)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if len(s) > 8 && strings.Contains(err.Error(), s) {
				t.Fatal("error message contains the input")
			}
			return
		}
		if tok.Reveal() != s || len(s) != Len || !strings.HasPrefix(s, Prefix) {
			t.Fatalf("Parse accepted a malformed token of length %d", len(s))
		}
		if checksumOf(s[len(Prefix):len(Prefix)+entropyLen]) != s[len(Prefix)+entropyLen:] {
			t.Fatal("Parse accepted a token whose checksum does not match")
		}
	})
}
