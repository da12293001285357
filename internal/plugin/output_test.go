package plugin

import (
	"bytes"
	"fmt"
	"testing"
)

// TestTerminalSafe: text written by others reaches the terminal without
// the controls it would act on, and everything else as it was.
func TestTerminalSafe(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"plain text, tabs and lines", "billing-sync\tConnected\n  Owner: team — 請求\n", "billing-sync\tConnected\n  Owner: team — 請求\n"},
		{"a colour", "\x1b[31mred\x1b[0m", "\uFFFD[31mred\uFFFD[0m"},
		{"a clipboard write (OSC 52)", "x\x1b]52;c;cm0gLXJmIH4=\a", "x\uFFFD]52;c;cm0gLXJmIH4=\uFFFD"},
		{"a C1 control sequence introducer", "a\u009b2Jb", "a\uFFFD2Jb"},
		{"a carriage return that rewrites the line", "safe\rrm -rf ~", "safe\uFFFDrm -rf ~"},
		{"bytes that are not UTF-8 pass as they are", "a\xffb", "a\xffb"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			n, err := fmt.Fprint(terminalSafe{&b}, c.in)
			if err != nil || n != len(c.in) || b.String() != c.want {
				t.Errorf("wrote %q (%d, %v), want %q", b.String(), n, err, c.want)
			}
		})
	}
	// What the plugin prints of what it was given goes through it too.
	var out, errOut bytes.Buffer
	if code := run([]string{"--x\x1b]52;c;eA==\a"}, &out, &errOut); code != ExitUsage {
		t.Errorf("an unknown flag exits %d, want %d", code, ExitUsage)
	}
	if bytes.ContainsAny(out.Bytes(), "\x1b\a") || bytes.ContainsAny(errOut.Bytes(), "\x1b\a") || !bytes.Contains(errOut.Bytes(), []byte("\uFFFD]52")) {
		t.Errorf("the plugin printed %q and %q", out.String(), errOut.String())
	}
}
