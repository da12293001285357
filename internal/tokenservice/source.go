package tokenservice

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

// The token service's own role (config/rbac/token_service_role.yaml): it
// reads apps, API catalogs and namespaces and writes usage into app status,
// and reads no Secrets.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=privateapps.dev,resources=privateapps,verbs=get;list;watch
// +kubebuilder:rbac:groups=privateapps.dev,resources=privateapps/status,verbs=get;patch
// +kubebuilder:rbac:groups=privateapps.dev,resources=apicatalogs,verbs=get;list;watch
// The metrics endpoint asks the kube-apiserver who a scraper is and whether
// it may read /metrics (internal/command, --metrics-secure).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Feed keeps the index and the namespace labels up to date from the
// manager's informers: the PrivateApp informer (status digests, no Secrets)
// and a metadata-only Namespace informer. A deleted app's rate-limit window
// is dropped from lim, so counters do not pile up as apps come and go.
func Feed(ctx context.Context, c cache.Cache, ix *Index, ns *NamespaceLabels, lim ratelimit.Taker, h *IndexHealth) error {
	apps, err := c.GetInformer(ctx, &v1alpha1.PrivateApp{})
	if err != nil {
		return fmt.Errorf("watching PrivateApps: %w", err)
	}
	if _, err := apps.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { h.Observed(); setApp(ix, obj) },
		UpdateFunc: func(_, obj any) { h.Observed(); setApp(ix, obj) },
		DeleteFunc: func(obj any) { h.Observed(); removeApp(ix, lim, obj) },
	}); err != nil {
		return err
	}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	nss, err := c.GetInformer(ctx, meta)
	if err != nil {
		return fmt.Errorf("watching Namespaces: %w", err)
	}
	_, err = nss.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { ns.set(obj) },
		UpdateFunc: func(_, obj any) { ns.set(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if m, ok := obj.(metav1.Object); ok {
				ns.remove(m.GetName())
			}
		},
	})
	return err
}

func removeApp(ix *Index, lim ratelimit.Taker, obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if a, ok := obj.(*v1alpha1.PrivateApp); ok {
		ix.Remove(types.NamespacedName{Namespace: a.Namespace, Name: a.Name})
		lim.Forget(appKey(a.Namespace, a.Name))
	}
}

func setApp(ix *Index, obj any) {
	if a, ok := obj.(*v1alpha1.PrivateApp); ok {
		ix.Set(a)
	}
}

// NamespaceLabels holds each namespace's edition and API add-on labels.
type NamespaceLabels struct {
	mu sync.RWMutex
	m  map[string]accountLabels
}

type accountLabels struct {
	edition string
	addOn   bool
}

// NewNamespaceLabels returns an empty set.
func NewNamespaceLabels() *NamespaceLabels { return &NamespaceLabels{m: map[string]accountLabels{}} }

// Labels implements AccountLabels.
func (n *NamespaceLabels) Labels(ns string) (string, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	l := n.m[ns]
	return l.edition, l.addOn
}

func (n *NamespaceLabels) set(obj any) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	l := m.GetLabels()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.m[m.GetName()] = accountLabels{edition: l[v1alpha1.EditionLabel], addOn: l[v1alpha1.APILimitIncreaseLabel] == "true"}
}

func (n *NamespaceLabels) remove(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.m, name)
}

// SeedAccountDays raises each account's count for today to the calls its
// apps' status records for today (the sum of every replica's flushes), so
// that a replica that restarts, with counters of its own, does not give the
// account a fresh day. At most one flush interval of calls is missing from
// status; the replica counts on from there.
func SeedAccountDays(ctx context.Context, r client.Reader, l *ratelimit.Limiter, now time.Time) error {
	var apps v1alpha1.PrivateAppList
	if err := r.List(ctx, &apps); err != nil {
		return fmt.Errorf("reading today's calls from PrivateApp status: %w", err)
	}
	for account, calls := range callsToday(apps.Items, now) {
		l.Seed(account, calls, now)
	}
	return nil
}

// callsToday sums, per namespace, the calls the apps' status records for
// the UTC day of now.
func callsToday(apps []v1alpha1.PrivateApp, now time.Time) map[string]int64 {
	today := now.UTC().Format(time.DateOnly)
	out := map[string]int64{}
	for i := range apps {
		if u := apps[i].Status.Usage; u != nil {
			for _, d := range u.Daily {
				if d.Date == today {
					out[apps[i].Namespace] += d.Calls
				}
			}
		}
	}
	return out
}
