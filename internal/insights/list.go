package insights

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// selectors reads a list's field selectors: each field of fields goes to
// set, metadata.namespace narrows the request's namespace, and anything
// else (labels, watches, !=, unknown fields) is a BadRequest that says
// what to use instead. It returns the namespace to read, "" for all.
func selectors(ctx context.Context, options *metainternalversion.ListOptions, resource string, fields []string,
	set func(field, value string) error) (string, error) {
	ns := genericapirequest.NamespaceValue(ctx)
	if options == nil {
		return ns, nil
	}
	bad := func(format string, a ...any) (string, error) {
		return "", apierrors.NewBadRequest(fmt.Sprintf(format, a...))
	}
	names := strings.Join(fields, ", ")
	if options.LabelSelector != nil && !options.LabelSelector.Empty() {
		return bad("%s have no labels; select them with --field-selector (%s)", resource, names)
	}
	if options.Watch {
		return bad("%s cannot be watched; list them again", resource)
	}
	if options.FieldSelector == nil {
		return ns, nil
	}
	for _, r := range options.FieldSelector.Requirements() {
		if r.Operator == selection.NotEquals {
			return bad("%s are selected by %s=value, not !=", resource, r.Field)
		}
		if r.Field == "metadata.namespace" {
			if ns != "" && ns != r.Value {
				return bad("metadata.namespace=%s contradicts the namespace of the request, %s", r.Value, ns)
			}
			ns = r.Value
			continue
		}
		if !slices.Contains(fields, r.Field) {
			return bad("%s cannot be selected by %q; use %s", resource, r.Field, names)
		}
		if err := set(r.Field, r.Value); err != nil {
			return "", apierrors.NewBadRequest(err.Error())
		}
	}
	return ns, nil
}

// fieldLabel is a field-label conversion that accepts the fields a kind is
// selected by, so the generic server lets them through to selectors.
func fieldLabel(resource string, fields []string) func(label, value string) (string, string, error) {
	return func(label, value string) (string, string, error) {
		if label == "metadata.namespace" || label == "metadata.name" || slices.Contains(fields, label) {
			return label, value, nil
		}
		return "", "", fmt.Errorf("%s cannot be selected by %q; use %s", resource, label, strings.Join(fields, ", "))
	}
}

func appName(v string) (string, error) {
	if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
		return "", fmt.Errorf("app=%q is not an app name: %s", v, strings.Join(errs, "; "))
	}
	return v, nil
}

// parseDay reads a UTC day: YYYY-MM-DD, an RFC 3339 time, or a duration
// before now (7d, 36h).
func parseDay(field, v string, now time.Time) (int64, error) {
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return calllog.DayOf(t), nil
	}
	t, err := parseTime(field, v, now)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is neither a day (2026-11-24), a time (2026-11-24T08:00:00Z) nor a duration before now (90s, 15m, 2h, 7d)", field, v)
	}
	return calllog.DayOf(t), nil
}

// dayRange is the UTC days a list of days covers: the last days days
// (today included) unless since or until say otherwise; a range reaching
// before what is kept is cut to it.
type dayRange struct {
	from, to int64
	oldest   int64 // the oldest day kept
}

func newDayRange(now time.Time, days int) dayRange {
	today := calllog.DayOf(now)
	return dayRange{from: today - int64(days-1), to: today, oldest: today - int64(days-1)}
}

func (r *dayRange) set(field, v string, now time.Time) error {
	d, err := parseDay(field, v, now)
	if err != nil {
		return err
	}
	if field == "since" {
		r.from = d
	} else {
		r.to = d
	}
	return nil
}

// check cuts the range to the days kept and says when nothing is left.
func (r *dayRange) check() error {
	r.from = max(r.from, r.oldest)
	if r.to < r.from {
		return apierrors.NewBadRequest(fmt.Sprintf("no day from %s to %s is kept: days from %s to today (UTC) are",
			day(r.from), day(r.to), day(r.oldest)))
	}
	return nil
}

func day(d int64) string { return calllog.StartOfDay(d).Format(time.DateOnly) }

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func int64Cell(n *int64) any {
	if n == nil {
		return "-"
	}
	return strconv.FormatInt(*n, 10)
}

// orAll shows an absent app as the sum of every app.
func orAll(app *string) string {
	if app == nil {
		return "(all apps)"
	}
	return *app
}

// optional is s, or nil for "".
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// value is *p, or "" for nil.
func value(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
