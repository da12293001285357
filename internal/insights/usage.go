package insights

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// usageDays is how many days PrivateApp.status.usage.daily holds.
const usageDays = 30

var usageFields = []string{"app", "since", "until"}

// usage is the REST storage of apiusages: the apps' status.usage.daily,
// per app or summed per namespace (the account), a row per UTC day.
type usage struct {
	apps  client.Reader
	clock clock.PassiveClock
}

var (
	_ rest.Lister               = (*usage)(nil)
	_ rest.Scoper               = (*usage)(nil)
	_ rest.KindProvider         = (*usage)(nil)
	_ rest.SingularNameProvider = (*usage)(nil)
	_ rest.ShortNamesProvider   = (*usage)(nil)
	_ rest.TableConvertor       = (*usage)(nil)
)

func (u *usage) New() runtime.Object     { return &insightsv1alpha1.APIUsage{} }
func (u *usage) NewList() runtime.Object { return &insightsv1alpha1.APIUsageList{} }
func (u *usage) Destroy()                {}
func (u *usage) Kind() string            { return "APIUsage" }
func (u *usage) NamespaceScoped() bool   { return true }
func (u *usage) GetSingularName() string { return "apiusage" }
func (u *usage) ShortNames() []string    { return []string{"usage"} }

// List answers `kubectl get apiusage`: without app=, each day sums the
// namespace's apps against the account's daily limit; with it, the app's.
func (u *usage) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	now := u.clock.Now()
	days := newDayRange(now, usageDays)
	var app string
	ns, err := selectors(ctx, options, "apiusages", usageFields, func(field, v string) (err error) {
		if field == "app" {
			app, err = appName(v)
			return err
		}
		return days.set(field, v, now)
	})
	if err != nil {
		return nil, err
	}
	if err := days.check(); err != nil {
		return nil, err
	}
	apps := &v1alpha1.PrivateAppList{}
	if err := u.apps.List(ctx, apps, client.InNamespace(ns)); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing apps: %w", err))
	}
	type account struct {
		limit int64
		days  map[string]*v1alpha1.DailyUsage
	}
	accounts := map[string]*account{}
	if ns != "" {
		accounts[ns] = &account{days: map[string]*v1alpha1.DailyUsage{}}
	}
	found := false
	for i := range apps.Items {
		a := &apps.Items[i]
		if app != "" && a.Name != app {
			continue
		}
		found = true
		acc := accounts[a.Namespace]
		if acc == nil {
			acc = &account{days: map[string]*v1alpha1.DailyUsage{}}
			accounts[a.Namespace] = acc
		}
		if a.Status.Usage == nil {
			continue
		}
		acc.limit = max(acc.limit, a.Status.Usage.DailyLimit)
		for _, d := range a.Status.Usage.Daily {
			sum := acc.days[d.Date]
			if sum == nil {
				sum = &v1alpha1.DailyUsage{Date: d.Date}
				acc.days[d.Date] = sum
			}
			sum.Calls += d.Calls
			sum.Refused += d.Refused
		}
	}
	if app != "" && !found && ns != "" {
		return nil, apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("privateapps").GroupResource(), app)
	}
	list := &insightsv1alpha1.APIUsageList{}
	for _, n := range sortedKeys(accounts) {
		acc := accounts[n]
		for d := days.from; d <= days.to; d++ {
			name := day(d)
			row := insightsv1alpha1.APIUsage{
				TypeMeta:   metav1.TypeMeta{APIVersion: insightsv1alpha1.SchemeGroupVersion.String(), Kind: "APIUsage"},
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n},
				Day:        name, App: optional(app),
			}
			if app != "" {
				row.Name += "." + app
			}
			if acc.limit > 0 {
				row.DailyLimit = &acc.limit
			}
			var calls, refused int64
			if sum := acc.days[name]; sum != nil {
				calls, refused = sum.Calls, sum.Refused
			}
			row.Calls, row.Refused = &calls, &refused
			list.Items = append(list.Items, row)
		}
	}
	return list, nil
}

var usageColumns = []metav1.TableColumnDefinition{
	{Name: "Day", Type: "string", Description: "The UTC day."},
	{Name: "App", Type: "string", Description: "The PrivateApp, or (all apps) for the account's sum."},
	{Name: "Calls", Type: "integer", Description: "Calls the rate limits let through."},
	{Name: "Refused", Type: "integer", Description: "Calls refused by rate limits or because the app was disconnected."},
	{Name: "Daily Limit", Type: "string", Description: "The account's calls per UTC day."},
	{Name: "Used", Type: "string", Description: "Calls as a share of the daily limit."},
}

// ConvertToTable makes the rows of `kubectl get apiusage`.
func (u *usage) ConvertToTable(_ context.Context, object runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	var items []insightsv1alpha1.APIUsage
	switch o := object.(type) {
	case *insightsv1alpha1.APIUsageList:
		items = o.Items
	case *insightsv1alpha1.APIUsage:
		items = []insightsv1alpha1.APIUsage{*o}
	default:
		return nil, fmt.Errorf("no table for %T", object)
	}
	table := &metav1.Table{ColumnDefinitions: usageColumns}
	for i := range items {
		it := &items[i]
		var calls, refused int64
		if it.Calls != nil {
			calls = *it.Calls
		}
		if it.Refused != nil {
			refused = *it.Refused
		}
		limit, used := "-", "-"
		if it.DailyLimit != nil && *it.DailyLimit > 0 {
			limit, used = fmt.Sprint(*it.DailyLimit), fmt.Sprintf("%.1f%%", 100*float64(calls)/float64(*it.DailyLimit))
		}
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells:  []any{it.Day, orAll(it.App), calls, refused, limit, used},
			Object: runtime.RawExtension{Object: it},
		})
	}
	return table, nil
}
