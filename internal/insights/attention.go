package insights

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// DefaultAttentionWithin is how soon a token's expiry or the end of a
// grace period must come to need attention, unless within= says otherwise.
const DefaultAttentionWithin = 14 * 24 * time.Hour

// AccountAttentionShare is the share of the account's daily limit past
// which the account needs attention.
const AccountAttentionShare = 0.8

// attentionOrder ranks the reasons, most urgent first: apps that do not
// work now, then an account about to stop, then ends that are coming, then
// what limits or blocks an app.
var attentionOrder = []string{
	insightsv1alpha1.AttentionExpired, insightsv1alpha1.AttentionError, insightsv1alpha1.AttentionDisconnected,
	insightsv1alpha1.AttentionAccountNearLimit, insightsv1alpha1.AttentionGracePeriodEnds, insightsv1alpha1.AttentionTokenExpiring,
	insightsv1alpha1.AttentionRateLimited, insightsv1alpha1.AttentionWaitingForSlot, insightsv1alpha1.AttentionScopesNotOffered,
}

var attentionFields = []string{"app", "reason", "within"}

// NeedsAttention lists what needs a person in apps (of any namespaces) at
// now: an app Expired, in Error, Disconnected, waiting for a slot under the
// cap, holding scopes no catalog offers, with a token or grace period that
// ends within within, or refused by rate limits today; an account past 80%
// of its daily limit. Most urgent first.
func NeedsAttention(apps []v1alpha1.PrivateApp, now time.Time, within time.Duration) []insightsv1alpha1.NeedsAttention {
	var out []insightsv1alpha1.NeedsAttention
	add := func(ns, app, reason string, since *metav1.Time, action string, format string, a ...any) {
		name := app
		if name == "" {
			name = "account"
		}
		out = append(out, insightsv1alpha1.NeedsAttention{
			TypeMeta:   metav1.TypeMeta{APIVersion: insightsv1alpha1.SchemeGroupVersion.String(), Kind: "NeedsAttention"},
			ObjectMeta: metav1.ObjectMeta{Name: name + "." + strings.ToLower(reason), Namespace: ns},
			App:        optional(app), Reason: reason, Message: fmt.Sprintf(format, a...), Action: action, Since: since,
		})
	}
	type account struct{ calls, limit int64 }
	accounts := map[string]*account{}
	for i := range apps {
		a := &apps[i]
		ns, name := a.Namespace, a.Name
		ready := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady)
		readySince := func() *metav1.Time {
			if ready == nil {
				return nil
			}
			return ready.LastTransitionTime.DeepCopy()
		}
		rotate := fmt.Sprintf(`kubectl create -n %s -f - <<< '{"apiVersion":"privateapps.dev/v1alpha1","kind":"TokenRotation","metadata":{"generateName":"%s-"},"spec":{"appName":"%s","strategy":"Immediate"}}'`, ns, name, name)
		switch {
		case a.Spec.Suspend:
			add(ns, name, insightsv1alpha1.AttentionDisconnected, readySince(),
				fmt.Sprintf(`kubectl patch privateapp %s -n %s --type merge -p '{"spec":{"suspend":false}}'`, name, ns),
				"the app is disconnected (spec.suspend): its tokens are refused; reconnect it when it should work again")
		case a.Status.Connection == v1alpha1.ConnectionExpired:
			since := readySince()
			if a.Status.Token != nil && a.Status.Token.ExpiresAt != nil {
				since = a.Status.Token.ExpiresAt.DeepCopy()
			}
			add(ns, name, insightsv1alpha1.AttentionExpired, since, rotate,
				"the app's token expired (spec.tokenLifetime); its calls are refused until a rotation issues a new one")
		case a.Status.Connection == v1alpha1.ConnectionError:
			msg := "the operator cannot bring the app to Ready"
			if ready != nil && ready.Message != "" {
				msg = ready.Reason + ": " + ready.Message
			}
			add(ns, name, insightsv1alpha1.AttentionError, readySince(), fmt.Sprintf("kubectl describe privateapp %s -n %s", name, ns), "%s", msg)
		case ready != nil && ready.Reason == v1alpha1.ReasonAppLimitExceeded:
			add(ns, name, insightsv1alpha1.AttentionWaitingForSlot, readySince(), fmt.Sprintf("kubectl get privateapps -n %s   # then delete one no longer used", ns),
				"the namespace has its 20 apps; this one waits for a slot and has no token")
		}
		if c := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionScopesOffered); c != nil && c.Status == metav1.ConditionFalse {
			add(ns, name, insightsv1alpha1.AttentionScopesNotOffered, c.LastTransitionTime.DeepCopy(),
				fmt.Sprintf("kubectl get apicatalogs   # then remove the scopes from privateapp %s -n %s, or have a catalog offer them", name, ns),
				"%s", c.Message)
		}
		if t := a.Status.Token; t != nil && a.Status.Connection != v1alpha1.ConnectionExpired {
			if t.ExpiresAt != nil && t.ExpiresAt.After(now) && t.ExpiresAt.Sub(now) <= within {
				add(ns, name, insightsv1alpha1.AttentionTokenExpiring, t.ExpiresAt.DeepCopy(), rotate+"   # or \"strategy\":\"Delayed\" to keep the old one for 7 days",
					"the token expires at %s (in %s); rotate it and move its clients to the new one", t.ExpiresAt.UTC().Format(time.RFC3339), duration.HumanDuration(t.ExpiresAt.Sub(now)))
			}
			if p := t.Previous; p != nil && p.ExpiresAt.After(now) && p.ExpiresAt.Sub(now) <= within {
				action := fmt.Sprintf("move clients from the old token (key previous-token of Secret %s/%s) to the new one (key token)", ns, a.TokenSecretName())
				if p.Rotation != "" {
					action += fmt.Sprintf("; when none is left: kubectl patch tokenrotation %s -n %s --type merge -p '{\"spec\":{\"expireOldTokenNow\":true}}'", p.Rotation, ns)
				}
				add(ns, name, insightsv1alpha1.AttentionGracePeriodEnds, p.ExpiresAt.DeepCopy(), action,
					"the old token stops working at %s (in %s), when its grace period ends", p.ExpiresAt.UTC().Format(time.RFC3339), duration.HumanDuration(p.ExpiresAt.Sub(now)))
			}
		}
		if u := a.Status.Usage; u != nil {
			acc := accounts[ns]
			if acc == nil {
				acc = &account{}
				accounts[ns] = acc
			}
			acc.limit = max(acc.limit, u.DailyLimit)
			d := a.UsageOn(now)
			acc.calls += d.Calls
			if d.Refused > 0 && !a.Spec.Suspend {
				add(ns, name, insightsv1alpha1.AttentionRateLimited, nil,
					fmt.Sprintf("kubectl get calls -n %s --field-selector app=%s,code=429", ns, name),
					"%d calls refused today (UTC) by rate limits, %d let through; spread the calls, or raise the limits (label the namespace %s=true)",
					d.Refused, d.Calls, v1alpha1.APILimitIncreaseLabel)
			}
		}
	}
	for ns, acc := range accounts {
		if acc.limit > 0 && float64(acc.calls) >= AccountAttentionShare*float64(acc.limit) {
			add(ns, "", insightsv1alpha1.AttentionAccountNearLimit, nil,
				fmt.Sprintf("kubectl get apiusage -n %s --field-selector since=7d", ns),
				"the account's apps made %d of its %d calls for today (%.0f%%); past the limit every app's calls are refused until 00:00 UTC",
				acc.calls, acc.limit, 100*float64(acc.calls)/float64(acc.limit))
		}
	}
	slices.SortFunc(out, func(a, b insightsv1alpha1.NeedsAttention) int {
		if d := slices.Index(attentionOrder, a.Reason) - slices.Index(attentionOrder, b.Reason); d != 0 {
			return d
		}
		return strings.Compare(a.Namespace+"/"+value(a.App), b.Namespace+"/"+value(b.App))
	})
	return out
}

// attention is the REST storage of needsattention.
type attention struct {
	apps  client.Reader
	clock clock.PassiveClock
}

var (
	_ rest.Lister               = (*attention)(nil)
	_ rest.Scoper               = (*attention)(nil)
	_ rest.KindProvider         = (*attention)(nil)
	_ rest.SingularNameProvider = (*attention)(nil)
	_ rest.TableConvertor       = (*attention)(nil)
)

func (s *attention) New() runtime.Object     { return &insightsv1alpha1.NeedsAttention{} }
func (s *attention) NewList() runtime.Object { return &insightsv1alpha1.NeedsAttentionList{} }
func (s *attention) Destroy()                {}
func (s *attention) Kind() string            { return "NeedsAttention" }
func (s *attention) NamespaceScoped() bool   { return true }
func (s *attention) GetSingularName() string { return "needsattention" }

// List answers `kubectl get needsattention`, in a namespace or across the
// namespaces the user may list.
func (s *attention) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	now := s.clock.Now()
	within := DefaultAttentionWithin
	var app, reason string
	ns, err := selectors(ctx, options, "needsattention", attentionFields, func(field, v string) (err error) {
		switch field {
		case "app":
			app, err = appName(v)
		case "reason":
			i := slices.IndexFunc(attentionOrder, func(r string) bool { return strings.EqualFold(r, v) })
			if i < 0 {
				return fmt.Errorf("reason=%q is not one of %s", v, strings.Join(attentionOrder, ", "))
			}
			reason = attentionOrder[i]
		case "within":
			t, perr := parseTime("within", v, now)
			if perr != nil || now.Sub(t) > 366*24*time.Hour {
				return fmt.Errorf("within=%q is not a duration of at most a year (36h, 14d)", v)
			}
			within = now.Sub(t)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	apps := &v1alpha1.PrivateAppList{}
	if err := s.apps.List(ctx, apps, client.InNamespace(ns)); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing apps: %w", err))
	}
	list := &insightsv1alpha1.NeedsAttentionList{}
	for _, row := range NeedsAttention(apps.Items, now, within) {
		if (app == "" || row.App == nil || *row.App == app) && (reason == "" || row.Reason == reason) {
			list.Items = append(list.Items, row)
		}
	}
	return list, nil
}

var attentionColumns = []metav1.TableColumnDefinition{
	{Name: "App", Type: "string", Description: "The PrivateApp, or (account) for the namespace's."},
	{Name: "Reason", Type: "string", Description: "Why it needs attention."},
	{Name: "When", Type: "string", Description: "Since when, or when the coming end comes."},
	{Name: "Message", Type: "string", Description: "What is wrong."},
	{Name: "Action", Type: "string", Description: "What to do."},
}

// ConvertToTable makes the rows of `kubectl get needsattention`.
func (s *attention) ConvertToTable(_ context.Context, object runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	var items []insightsv1alpha1.NeedsAttention
	switch o := object.(type) {
	case *insightsv1alpha1.NeedsAttentionList:
		items = o.Items
	case *insightsv1alpha1.NeedsAttention:
		items = []insightsv1alpha1.NeedsAttention{*o}
	default:
		return nil, fmt.Errorf("no table for %T", object)
	}
	now := s.clock.Now()
	table := &metav1.Table{ColumnDefinitions: attentionColumns}
	for i := range items {
		it := &items[i]
		app, when := value(it.App), "-"
		if app == "" {
			app = "(account)"
		}
		if it.Since != nil {
			if d := it.Since.Sub(now); d > 0 {
				when = "in " + duration.HumanDuration(d)
			} else {
				when = duration.HumanDuration(-d) + " ago"
			}
		}
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells:  []any{app, it.Reason, when, it.Message, it.Action},
			Object: runtime.RawExtension{Object: it},
		})
	}
	return table, nil
}
