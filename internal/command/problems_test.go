package command

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// twoFlags is a component with two checks and a Run that must not be
// reached when either fails.
type twoFlags struct {
	a, b int
	ran  bool
}

func (c *twoFlags) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.a, "a", 1, "")
	fs.IntVar(&c.b, "b", 1, "")
}

func (c *twoFlags) Validate() []error {
	var out []error
	if c.a < 0 {
		out = append(out, errors.New("--a is negative"))
	}
	if c.b < 0 {
		out = append(out, errors.New("--b is negative"))
	}
	return out
}

func (c *twoFlags) Run(context.Context) error { c.ran = true; return nil }

// TestRunReportsEveryProblemBeforeStart: every problem at once, exit 2,
// nothing run; an unknown flag or a stray argument is a usage error too.
func TestRunReportsEveryProblemBeforeStart(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says []string
	}{
		{[]string{"--a=-1", "--b=-2"}, []string{"2 problem(s); nothing was started", "--a is negative", "--b is negative"}},
		{[]string{"--c=1"}, []string{"unknown flag: --c"}},
		{[]string{"run"}, []string{`"run" is not one`}},
	} {
		c := &twoFlags{}
		var out strings.Builder
		if code := run("test", "a test", c, tc.args, &out); code != 2 || c.ran {
			t.Errorf("%q: exit %d, ran %v; want 2 without running", tc.args, code, c.ran)
		}
		for _, want := range tc.says {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%q: the output lacks %q:\n%s", tc.args, want, out.String())
			}
		}
	}
}

func TestCommaList(t *testing.T) {
	if got := strings.Join(CommaList(" a, ,b ,"), "|"); got != "a|b" {
		t.Errorf("CommaList = %q, want a|b", got)
	}
}
