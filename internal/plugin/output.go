package plugin

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// terminalSafe passes to w what it is given without the control
// characters a terminal acts on: escape sequences (colours, cursor moves,
// OSC 52 clipboard writes, hyperlinks), C1 controls, carriage returns and
// backspaces that rewrite a line. Each becomes U+FFFD; line breaks and
// tabs stay. Everything the plugin prints goes through it: names,
// descriptions, activity messages and call-log URLs are written by others.
type terminalSafe struct{ w io.Writer }

func (t terminalSafe) Write(p []byte) (int, error) {
	clean, copied := p, false
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case unsafeRune(r):
			if !copied {
				clean, copied = append([]byte(nil), p[:i]...), true
			}
			clean = append(clean, "\uFFFD"...)
		case copied:
			clean = append(clean, p[i:i+size]...)
		}
		i += size
	}
	if _, err := t.w.Write(clean); err != nil {
		return 0, err
	}
	return len(p), nil
}

func unsafeRune(r rune) bool {
	return r < 0x20 && r != '\n' && r != '\t' || r >= 0x7f && r <= 0x9f
}

// table writes rows under headers, aligned as kubectl aligns them.
func table(w io.Writer, headers []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// emit writes v as JSON or YAML for -o json|yaml; it reports false for
// table output, which the caller writes.
func (e *env) emit(v any) (bool, error) {
	switch e.output {
	case "json":
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return true, err
		}
		_, err = fmt.Fprintln(e.out, string(b))
		return true, err
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return true, err
		}
		_, err = e.out.Write(b)
		return true, err
	}
	return false, nil
}

// ago is a past time as kubectl shows ages; "-" for none.
func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if d := now.Sub(t); d >= 0 {
		return duration.HumanDuration(d) + " ago"
	}
	return "in " + duration.HumanDuration(t.Sub(now))
}

// when is a time as a UTC timestamp with how far it is from now.
func when(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC") + " (" + ago(t, now) + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// chart draws values (oldest first) as a bar chart of height rows, with
// the largest value on the top line and the first and last labels under it.
func chart(w io.Writer, values []int64, labels []string, height int, limit int64) {
	var top int64 = 1
	for _, v := range values {
		top = max(top, v)
	}
	blocks := []rune(" ▁▂▃▄▅▆▇█")
	for row := height - 1; row >= 0; row-- {
		var b strings.Builder
		for _, v := range values {
			level := float64(v) / float64(top) * float64(height)
			fill := level - float64(row)
			switch {
			case fill >= 1:
				b.WriteRune('█')
			case fill > 0:
				b.WriteRune(blocks[int(math.Ceil(fill*8))])
			default:
				b.WriteRune(' ')
			}
		}
		axis := ""
		if row == height-1 {
			axis = fmt.Sprintf(" %d", top)
			if limit > 0 {
				axis += fmt.Sprintf(" (%.1f%% of the daily limit %d)", 100*float64(top)/float64(limit), limit)
			}
		}
		if row == 0 {
			axis = " 0"
		}
		fmt.Fprintf(w, "  │%s│%s\n", b.String(), axis)
	}
	if len(labels) > 0 {
		first, last := labels[0], labels[len(labels)-1]
		gap := max(len(values)-len(first)-len(last), 1)
		fmt.Fprintf(w, "   %s%s%s\n", first, strings.Repeat(" ", gap), last)
	}
}
