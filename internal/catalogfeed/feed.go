// Package catalogfeed keeps the compiled APICatalogs current from the
// manager's informer, for the token service, the admission webhooks and the
// PrivateApp controller of one process. Every process compiles the same
// catalogs the same way (catalog.Compile, oldest first), so every replica
// and the catalogs' own status agree on what is in force.
package catalogfeed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
)

// Convert turns an APICatalog into what the matcher reads.
func Convert(c *v1alpha1.APICatalog) catalog.Catalog {
	out := catalog.Catalog{
		Name: c.Name, Hosts: c.Spec.Hosts, PathPrefix: c.Spec.PathPrefix,
		AllowUnmatched: c.Spec.UnmatchedRequests == v1alpha1.UnmatchedAllow,
		Scopes:         make([]string, len(c.Spec.Scopes)),
		Routes:         make([]catalog.Route, len(c.Spec.Routes)),
	}
	for i, s := range c.Spec.Scopes {
		out.Scopes[i] = s.Name
	}
	for i, r := range c.Spec.Routes {
		cr := catalog.Route{Name: r.Name, Path: r.Path, Hosts: r.Hosts, Scopes: r.Scopes, Methods: make([]string, len(r.Methods))}
		for j, m := range r.Methods {
			cr.Methods[j] = string(m)
		}
		if r.Record != nil {
			cr.RecordType, cr.RecordAction = r.Record.Type, string(r.Record.Action)
		}
		out.Routes[i] = cr
	}
	return out
}

// Compile compiles catalogs oldest first (then by name), the order that
// decides which of two conflicting catalogs stays in force.
func Compile(cs []v1alpha1.APICatalog) (*catalog.Set, []catalog.Result) {
	return catalog.Compile(inAgeOrder(cs, ""))
}

// inAgeOrder converts cs, oldest first, leaving out the catalog named skip.
func inAgeOrder(cs []v1alpha1.APICatalog, skip string) []catalog.Catalog {
	sorted := make([]*v1alpha1.APICatalog, 0, len(cs))
	for i := range cs {
		if cs[i].Name != skip { // catalog names are never empty
			sorted = append(sorted, &cs[i])
		}
	}
	slices.SortFunc(sorted, compareAge)
	in := make([]catalog.Catalog, len(sorted), len(sorted)+1)
	for i, c := range sorted {
		in[i] = Convert(c)
	}
	return in
}

func compareAge(a, b *v1alpha1.APICatalog) int {
	return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), strings.Compare(a.Name, b.Name))
}

// Feed holds the compiled catalogs and recompiles them on every change.
type Feed struct {
	Log logr.Logger

	mu      sync.Mutex
	objs    map[string]*v1alpha1.APICatalog
	subs    []chan event.GenericEvent
	current atomic.Pointer[catalog.Set]
	dirty   chan struct{}
	ready   chan struct{}
	synced  func() bool
}

// New returns a feed with nothing compiled yet.
func New(log logr.Logger) *Feed {
	return &Feed{Log: log, objs: map[string]*v1alpha1.APICatalog{}, dirty: make(chan struct{}, 1), ready: make(chan struct{})}
}

// Register watches APICatalogs through c's informer.
func (f *Feed) Register(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &v1alpha1.APICatalog{})
	if err != nil {
		return fmt.Errorf("watching APICatalogs: %w", err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: f.set,
		UpdateFunc: func(old, obj any) {
			// Status updates (the controller's own) change nothing in force.
			if o, ok := old.(*v1alpha1.APICatalog); ok && o.Generation == obj.(*v1alpha1.APICatalog).Generation && o.Generation != 0 {
				return
			}
			f.set(obj)
		},
		DeleteFunc: f.remove,
	})
	if err != nil {
		return err
	}
	f.synced = reg.HasSynced
	return nil
}

func (f *Feed) set(obj any) {
	c, ok := obj.(*v1alpha1.APICatalog)
	if !ok {
		return
	}
	f.mu.Lock()
	f.objs[c.Name] = c
	f.mu.Unlock()
	f.markDirty()
}

func (f *Feed) remove(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	c, ok := obj.(*v1alpha1.APICatalog)
	if !ok {
		return
	}
	f.mu.Lock()
	delete(f.objs, c.Name)
	f.mu.Unlock()
	f.markDirty()
}

func (f *Feed) markDirty() {
	select {
	case f.dirty <- struct{}{}:
	default: // a compile is due already and will see this change
	}
}

// NeedLeaderElection is false: every replica compiles for itself.
func (f *Feed) NeedLeaderElection() bool { return false }

// Start compiles once the informer has synced, then again after every
// change, until ctx ends.
func (f *Feed) Start(ctx context.Context) error {
	if f.synced == nil {
		return errors.New("catalogfeed: Register was not called")
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), f.synced) {
		return nil
	}
	f.compile()
	close(f.ready)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.dirty:
			f.compile()
		}
	}
}

func (f *Feed) compile() {
	f.mu.Lock()
	cs := make([]v1alpha1.APICatalog, 0, len(f.objs))
	for _, c := range f.objs {
		cs = append(cs, *c)
	}
	subs := slices.Clone(f.subs)
	f.mu.Unlock()
	set, results := Compile(cs)
	f.current.Store(set)
	routes := 0
	for _, r := range results {
		routes += r.Routes
	}
	f.Log.V(1).Info("API catalogs compiled", "catalogs", len(cs), "routesInForce", routes)
	for _, ch := range subs {
		select {
		case ch <- event.GenericEvent{Object: &v1alpha1.APICatalog{}}:
		default: // the subscriber has a change to handle already
		}
	}
}

// Current is the catalogs in force; catalog.Empty until the first compile.
func (f *Feed) Current() *catalog.Set {
	if s := f.current.Load(); s != nil {
		return s
	}
	return catalog.Empty
}

// Wait blocks until the first compile, or ctx ends; it reports whether the
// catalogs were compiled.
func (f *Feed) Wait(ctx context.Context) bool {
	select {
	case <-f.ready:
		return true
	case <-ctx.Done():
		return false
	}
}

// Subscribe returns a channel that receives an event after each compile,
// for a controller's source.Channel.
func (f *Feed) Subscribe() <-chan event.GenericEvent {
	ch := make(chan event.GenericEvent, 1)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	return ch
}

// Check compiles others (oldest first) and then c, as if c were the newest
// catalog, and returns what is wrong with c: its problems, and its conflicts
// with the catalogs in force. It also returns the scopes in force then.
func Check(others []v1alpha1.APICatalog, c *v1alpha1.APICatalog) (catalog.Result, *catalog.Set) {
	set, results := catalog.Compile(append(inAgeOrder(others, c.Name), Convert(c)))
	return results[len(results)-1], set
}
