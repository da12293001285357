package insights

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

var recordFields = []string{"action", "app", "recordType", "since", "until"}

// records is the REST storage of recordinsights: counts of the call log's
// successful record calls, a row per UTC day and record type, every day of
// the range (a day without calls is a row of zeros, not a gap).
type records struct {
	store calllog.Store
	apps  client.Reader
	clock clock.PassiveClock
	// days is how many UTC days the call log keeps.
	days int
	// maxRows bounds one answer.
	maxRows int
}

// DefaultMaxRecordRows bounds an answer of record insights: 30 days of 20
// record types in 33 namespaces, or one namespace's month many times over.
const DefaultMaxRecordRows = 20000

var (
	_ rest.Lister               = (*records)(nil)
	_ rest.Scoper               = (*records)(nil)
	_ rest.KindProvider         = (*records)(nil)
	_ rest.SingularNameProvider = (*records)(nil)
	_ rest.TableConvertor       = (*records)(nil)
)

func (r *records) New() runtime.Object     { return &insightsv1alpha1.RecordInsight{} }
func (r *records) NewList() runtime.Object { return &insightsv1alpha1.RecordInsightList{} }
func (r *records) Destroy()                {}
func (r *records) Kind() string            { return "RecordInsight" }
func (r *records) NamespaceScoped() bool   { return true }
func (r *records) GetSingularName() string { return "recordinsight" }

// List answers `kubectl get recordinsights`: without app=, each row sums
// the namespace's apps; with it, the app's own.
func (r *records) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	now := r.clock.Now()
	days := newDayRange(now, r.days)
	var q calllog.RecordQuery
	ns, err := selectors(ctx, options, "recordinsights", recordFields, func(field, v string) (err error) {
		switch field {
		case "app":
			q.App, err = appName(v)
		case "recordType":
			if v == "" || len(v) > 253 {
				return fmt.Errorf("recordType= takes a record type (contacts, deployments.apps, ...)")
			}
			q.RecordType = v
		case "action":
			i := slices.IndexFunc(calllog.RecordActions, func(a string) bool { return strings.EqualFold(a, v) })
			if i < 0 {
				return fmt.Errorf("action=%q is not one of %s", v, strings.Join(calllog.RecordActions, ", "))
			}
			q.Action = calllog.RecordActions[i]
		default:
			err = days.set(field, v, now)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := days.check(); err != nil {
		return nil, err
	}
	q.Namespace, q.FromDay, q.ToDay = ns, days.from, days.to
	counts, err := r.store.CountRecords(ctx, q)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("counting records: %w", err))
	}
	// Which namespaces and record types get rows: those of the apps and
	// catalogs in force, and those with counts.
	namespaces, types, err := r.known(ctx, ns, q)
	if err != nil {
		return nil, err
	}
	type key struct{ ns, day, typ string }
	rows := map[key]*insightsv1alpha1.RecordInsight{}
	for _, c := range counts {
		namespaces[c.Namespace], types[c.RecordType] = true, true
		k := key{c.Namespace, day(c.Day), c.RecordType}
		if rows[k] == nil {
			rows[k] = r.row(c.Namespace, q.App, k.day, c.RecordType, q.Action)
		}
		*actionCount(rows[k], c.Action) += c.Count
	}
	if n := len(namespaces) * int(days.to-days.from+1) * len(types); n > r.maxRows {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the answer would hold %d rows (%d namespaces × %d days × %d record types), over the %d one list may hold: "+
			"narrow it with a namespace (-n), since=/until=, app= or recordType=", n, len(namespaces), days.to-days.from+1, len(types), r.maxRows))
	}
	list := &insightsv1alpha1.RecordInsightList{}
	for _, n := range sortedKeys(namespaces) {
		for d := days.from; d <= days.to; d++ {
			for _, t := range sortedKeys(types) {
				row := rows[key{n, day(d), t}]
				if row == nil {
					row = r.row(n, q.App, day(d), t, q.Action)
				}
				list.Items = append(list.Items, *row)
			}
		}
	}
	return list, nil
}

// known returns the namespaces (of ns, or all with apps) and record types
// (of the catalogs' routes) that have rows even without counts.
func (r *records) known(ctx context.Context, ns string, q calllog.RecordQuery) (namespaces, types map[string]bool, err error) {
	namespaces, types = map[string]bool{}, map[string]bool{}
	if ns != "" {
		namespaces[ns] = true
	} else {
		apps := &v1alpha1.PrivateAppList{}
		if err := r.apps.List(ctx, apps); err != nil {
			return nil, nil, apierrors.NewInternalError(fmt.Errorf("listing apps: %w", err))
		}
		for i := range apps.Items {
			namespaces[apps.Items[i].Namespace] = true
		}
	}
	if q.RecordType != "" {
		types[q.RecordType] = true
		return namespaces, types, nil
	}
	catalogs := &v1alpha1.APICatalogList{}
	if err := r.apps.List(ctx, catalogs); err != nil {
		return nil, nil, apierrors.NewInternalError(fmt.Errorf("listing API catalogs: %w", err))
	}
	for i := range catalogs.Items {
		for _, route := range catalogs.Items[i].Spec.Routes {
			if route.Record != nil && (q.Action == "" || string(route.Record.Action) == q.Action) {
				types[route.Record.Type] = true
			}
		}
	}
	return namespaces, types, nil
}

// row is a row of zeros for the actions asked about.
func (r *records) row(ns, app, d, recordType, action string) *insightsv1alpha1.RecordInsight {
	name := d + "." + recordType
	if app != "" {
		name += "." + app
	}
	row := &insightsv1alpha1.RecordInsight{
		TypeMeta:   metav1.TypeMeta{APIVersion: insightsv1alpha1.SchemeGroupVersion.String(), Kind: "RecordInsight"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Day:        d, App: optional(app), RecordType: recordType,
	}
	for _, a := range calllog.RecordActions {
		if action == "" || action == a {
			*actionField(row, a) = new(int64)
		}
	}
	return row
}

func actionField(row *insightsv1alpha1.RecordInsight, action string) **int64 {
	switch action {
	case calllog.RecordCreated:
		return &row.Created
	case calllog.RecordUpdated:
		return &row.Updated
	case calllog.RecordDeleted:
		return &row.Deleted
	default:
		return &row.Merged
	}
}

func actionCount(row *insightsv1alpha1.RecordInsight, action string) *int64 {
	p := actionField(row, action)
	if *p == nil {
		*p = new(int64)
	}
	return *p
}

var recordColumns = []metav1.TableColumnDefinition{
	{Name: "Day", Type: "string", Description: "The UTC day."},
	{Name: "App", Type: "string", Description: "The PrivateApp, or (all apps) for the namespace's sum."},
	{Name: "Record Type", Type: "string", Description: "What the calls acted on."},
	{Name: "Created", Type: "string", Description: "Records created by successful calls."},
	{Name: "Updated", Type: "string", Description: "Records updated."},
	{Name: "Deleted", Type: "string", Description: "Records deleted."},
	{Name: "Merged", Type: "string", Description: "Records merged."},
}

// ConvertToTable makes the rows of `kubectl get recordinsights`.
func (r *records) ConvertToTable(_ context.Context, object runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	var items []insightsv1alpha1.RecordInsight
	switch o := object.(type) {
	case *insightsv1alpha1.RecordInsightList:
		items = o.Items
	case *insightsv1alpha1.RecordInsight:
		items = []insightsv1alpha1.RecordInsight{*o}
	default:
		return nil, fmt.Errorf("no table for %T", object)
	}
	table := &metav1.Table{ColumnDefinitions: recordColumns}
	for i := range items {
		it := &items[i]
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells:  []any{it.Day, orAll(it.App), it.RecordType, int64Cell(it.Created), int64Cell(it.Updated), int64Cell(it.Deleted), int64Cell(it.Merged)},
			Object: runtime.RawExtension{Object: it},
		})
	}
	return table, nil
}

// daysKept is how many UTC days a retention keeps.
func daysKept(retention time.Duration) int {
	return max(int(retention/(24*time.Hour)), 1)
}
