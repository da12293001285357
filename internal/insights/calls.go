package insights

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// DefaultWindow is how far back a list of calls reaches when it names no
// time range: a day, so that `kubectl get calls` (which pages through
// everything it is given) stays quick on a busy app; since=30d reads the
// whole log.
const DefaultWindow = 24 * time.Hour

// callFields are the field selectors of calls, each with what it does to
// the query.
var callFields = map[string]func(q *calllog.Query, value string, now time.Time) error{
	"app": func(q *calllog.Query, v string, _ time.Time) (err error) {
		q.App, err = appName(v)
		return err
	},
	"method": func(q *calllog.Query, v string, _ time.Time) error {
		m := strings.ToUpper(v)
		if m == "" || len(m) > 32 || strings.Trim(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			return fmt.Errorf("method=%q is not an HTTP method (GET, POST, ...)", v)
		}
		q.Method = m
		return nil
	},
	"code": func(q *calllog.Query, v string, _ time.Time) error {
		if len(v) == 3 && strings.EqualFold(v[1:], "xx") && v[0] >= '1' && v[0] <= '5' {
			q.CodeClass = int(v[0] - '0')
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			return fmt.Errorf("code=%q is neither a status code (404) nor a class of them (4xx)", v)
		}
		q.Code = n
		return nil
	},
	"since": func(q *calllog.Query, v string, now time.Time) (err error) {
		q.From, err = parseTime("since", v, now)
		return err
	},
	"until": func(q *calllog.Query, v string, now time.Time) (err error) {
		q.To, err = parseTime("until", v, now)
		return err
	},
	"reason": func(q *calllog.Query, v string, _ time.Time) error {
		if v == "" || len(v) > 64 || strings.Trim(v, "abcdefghijklmnopqrstuvwxyz_") != "" {
			return fmt.Errorf("reason=%q is not a reason (allowed, no_gateway_report, missing_scope, rate_limit_app, ...)", v)
		}
		q.Reason = v
		return nil
	},
	"url": func(q *calllog.Query, v string, _ time.Time) error {
		if v == "" || len(v) > 256 {
			return fmt.Errorf("url= takes a part of the path and query, 1 to 256 characters")
		}
		q.URLContains = v
		return nil
	},
}

// parseTime reads a point in time: RFC 3339, or a duration before now
// (90s, 15m, 2h, 7d).
func parseTime(field, v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 3650 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	} else if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s=%q is neither a time (2026-11-24T08:00:00Z) nor a duration before now (90s, 15m, 2h, 7d)", field, v)
}

// calls is the REST storage of insights.privateapps.dev/v1alpha1 calls: a
// read-only list over the call log.
type calls struct {
	store calllog.Store
	clock clock.PassiveClock
}

var (
	_ rest.Storage              = (*calls)(nil)
	_ rest.Lister               = (*calls)(nil)
	_ rest.Scoper               = (*calls)(nil)
	_ rest.KindProvider         = (*calls)(nil)
	_ rest.SingularNameProvider = (*calls)(nil)
	_ rest.TableConvertor       = (*calls)(nil)
)

func (c *calls) New() runtime.Object     { return &insightsv1alpha1.Call{} }
func (c *calls) NewList() runtime.Object { return &insightsv1alpha1.CallList{} }
func (c *calls) Destroy()                {}
func (c *calls) Kind() string            { return "Call" }
func (c *calls) NamespaceScoped() bool   { return true }
func (c *calls) GetSingularName() string { return "call" }

// List answers `kubectl get calls`: newest first, filtered by field
// selectors, in pages of options.Limit (at most calllog.MaxLimit).
func (c *calls) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	q, err := c.query(ctx, options)
	if err != nil {
		return nil, err
	}
	page, err := c.store.List(ctx, q)
	if err != nil {
		if err == calllog.ErrInvalidContinue {
			return nil, apierrors.NewResourceExpired(err.Error())
		}
		return nil, apierrors.NewInternalError(fmt.Errorf("reading the call log: %w", err))
	}
	list := &insightsv1alpha1.CallList{ListMeta: metav1.ListMeta{Continue: page.Continue}, Items: make([]insightsv1alpha1.Call, len(page.Entries))}
	for i := range page.Entries {
		list.Items[i] = toCall(&page.Entries[i])
	}
	return list, nil
}

func (c *calls) query(ctx context.Context, options *metainternalversion.ListOptions) (calllog.Query, error) {
	q := calllog.Query{Limit: calllog.DefaultLimit}
	now := c.clock.Now()
	ns, err := selectors(ctx, options, "calls", sortedKeys(callFields), func(field, v string) error {
		return callFields[field](&q, v, now)
	})
	if err != nil {
		return calllog.Query{}, err
	}
	q.Namespace = ns
	if options == nil {
		options = &metainternalversion.ListOptions{}
	}
	bad := func(err error) (calllog.Query, error) {
		return calllog.Query{}, apierrors.NewBadRequest(err.Error())
	}
	if q.From.IsZero() && q.To.IsZero() {
		q.From = now.Add(-DefaultWindow)
	}
	if options.Limit > 0 {
		q.Limit = int(min(options.Limit, calllog.MaxLimit))
	}
	q.Continue = options.Continue
	if err := q.Check(); err != nil {
		if err == calllog.ErrInvalidContinue {
			return calllog.Query{}, apierrors.NewResourceExpired(err.Error())
		}
		return bad(err)
	}
	return q, nil
}

func toCall(e *calllog.Entry) insightsv1alpha1.Call {
	c := insightsv1alpha1.Call{
		TypeMeta: metav1.TypeMeta{APIVersion: insightsv1alpha1.SchemeGroupVersion.String(), Kind: "Call"},
		ObjectMeta: metav1.ObjectMeta{Name: e.ID, Namespace: e.Namespace,
			CreationTimestamp: metav1.NewTime(e.Time.Truncate(time.Second))},
		Time: metav1.NewMicroTime(e.Time), App: e.App, Method: e.Method, Host: e.Host, Path: e.Path, Query: e.Query,
		Route: e.Route, Code: int32(e.Code), //nolint:gosec // G115: an HTTP status code
		DecidedBy: e.DecidedBy, Reason: e.Reason, Source: e.Source, Gateway: e.Gateway,
	}
	if e.Latency > 0 {
		c.Latency = &metav1.Duration{Duration: e.Latency}
	}
	return c
}

var callColumns = []metav1.TableColumnDefinition{
	{Name: "Time", Type: "string", Format: "date-time", Description: "When the call was made (UTC)."},
	{Name: "App", Type: "string", Description: "The PrivateApp that made it."},
	{Name: "Method", Type: "string", Description: "The HTTP method."},
	{Name: "Code", Type: "integer", Description: "The status code the client got."},
	{Name: "URL", Type: "string", Description: "Path and query, secrets redacted."},
	{Name: "Decided By", Type: "string", Description: "Who decided the code, and the token service's reason for a refusal."},
	{Name: "Latency", Type: "string", Description: "How long the answer took, where known."},
	{Name: "Route", Type: "string", Priority: 1, Description: "The APICatalog route."},
	{Name: "Source", Type: "string", Priority: 1, Description: "gateway or kubernetes."},
	{Name: "Gateway", Type: "string", Priority: 1, Description: "The gateway that reports the call, if one does."},
	{Name: "ID", Type: "string", Priority: 1, Description: "The correlation id."},
}

// ConvertToTable makes the rows of `kubectl get calls`.
func (c *calls) ConvertToTable(_ context.Context, object runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{ColumnDefinitions: callColumns}
	var items []insightsv1alpha1.Call
	switch o := object.(type) {
	case *insightsv1alpha1.CallList:
		table.Continue, items = o.Continue, o.Items
	case *insightsv1alpha1.Call:
		items = []insightsv1alpha1.Call{*o}
	default:
		return nil, fmt.Errorf("no table for %T", object)
	}
	for i := range items {
		call := &items[i]
		url := call.Path
		if call.Query != "" {
			url += "?" + call.Query
		}
		decided := call.DecidedBy
		if call.Reason != "" && call.Reason != calllog.ReasonAllowed {
			decided += ": " + call.Reason
		}
		latency := "-"
		if call.Latency != nil {
			latency = call.Latency.Duration.String()
		}
		route, gateway := cmp.Or(call.Route, "-"), cmp.Or(call.Gateway, "-")
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells: []any{call.Time.UTC().Format("2006-01-02T15:04:05.000Z"), call.App, call.Method, call.Code, truncate(url, 80),
				decided, latency, route, call.Source, gateway, call.Name},
			Object: runtime.RawExtension{Object: call},
		})
	}
	return table, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
