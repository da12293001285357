package controller

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

var _ = Describe("APICatalog", func() {
	var ns string

	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "apicat-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
		// Catalogs are cluster-scoped: each test removes its own, so the
		// other tests run without any.
		DeferCleanup(func() {
			Expect(k8s.DeleteAllOf(ctx, &v1alpha1.APICatalog{})).To(Succeed())
			Eventually(func() []v1alpha1.APICatalog {
				var l v1alpha1.APICatalogList
				Expect(k8s.List(ctx, &l)).To(Succeed())
				return l.Items
			}).Should(BeEmpty())
		})
	})

	It("reports in status whether a catalog is in force, and why not", func() {
		crm := crmCatalog("crm")
		Expect(k8s.Create(ctx, crm)).To(Succeed())
		crm = waitCatalog("crm", func(c *v1alpha1.APICatalog) bool { return catalogReason(c) == v1alpha1.ReasonInForce })
		Expect(crm.Status.ScopesInForce).To(BeEquivalentTo(3))
		Expect(crm.Status.RoutesInForce).To(BeEquivalentTo(2))
		Expect(readyOf(crm).Message).To(Equal("The token service matches requests against its 2 routes and apps may ask for its 3 scopes"))

		// A template that does not parse: CEL cannot see it, the controller can.
		bad := crmCatalog("bad")
		bad.Spec.PathPrefix = "/bad"
		bad.Spec.Routes = []v1alpha1.CatalogRoute{{Name: "r", Methods: []v1alpha1.HTTPMethod{"GET"}, Path: "/bad/{id", Scopes: []string{"nope.read"}}}
		Expect(k8s.Create(ctx, bad)).To(Succeed())
		bad = waitCatalog("bad", func(c *v1alpha1.APICatalog) bool { return catalogReason(c) == v1alpha1.ReasonInvalid })
		Expect(readyOf(bad).Status).To(Equal(metav1.ConditionFalse))
		Expect(readyOf(bad).Message).To(And(
			ContainSubstring(`spec.routes[0].path: the path template "/bad/{id" has the segment "{id": a wildcard must be a whole segment`),
			ContainSubstring(`spec.routes[0].scopes[0]: the route needs the scope "nope.read", which the catalog does not offer`),
			HaveSuffix("The catalog is not in force: none of its routes or scopes apply until it is fixed")))
		Expect(bad.Status.RoutesInForce).To(BeZero())

		// A newer catalog whose route matches the same requests with other
		// needs is set aside, and both say so.
		sales := &v1alpha1.APICatalog{
			ObjectMeta: metav1.ObjectMeta{Name: "sales"},
			Spec: v1alpha1.APICatalogSpec{
				Scopes: []v1alpha1.CatalogScope{{Name: "sales.deals.read"}},
				Routes: []v1alpha1.CatalogRoute{{Name: "deal", Methods: []v1alpha1.HTTPMethod{"GET"}, Path: "/crm/v3/objects/deals/{dealId}", Scopes: []string{"sales.deals.read"}}},
			},
		}
		Expect(k8s.Create(ctx, sales)).To(Succeed())
		sales = waitCatalog("sales", func(c *v1alpha1.APICatalog) bool { return catalogReason(c) == v1alpha1.ReasonRouteConflict })
		Expect(sales.Status.Conflicts).To(Equal([]v1alpha1.RouteConflict{{Route: "deal", OtherCatalog: "crm", OtherRoute: "deals-get", Example: "GET /crm/v3/objects/deals/x"}}))
		Expect(readyOf(sales).Message).To(ContainSubstring(`route "deal" (/crm/v3/objects/deals/{dealId}) of APICatalog "sales" and route "deals-get" (/crm/v3/objects/deals/{id}) of APICatalog "crm" both match GET /crm/v3/objects/deals/x`))
		Expect(sales.Status.ScopesInForce).To(BeZero())
		crm = waitCatalog("crm", func(c *v1alpha1.APICatalog) bool { return len(c.Status.Conflicts) == 1 })
		Expect(readyOf(crm).Status).To(Equal(metav1.ConditionTrue))
		Expect(readyOf(crm).Message).To(ContainSubstring(`APICatalog "sales" is set aside`))
		Eventually(func() []string { return catalogEvents("sales") }).Should(ContainElement("Warning/RouteConflict"))

		// Moving the route out of the way puts it in force and clears both.
		Eventually(func() error {
			s := getCatalog("sales")
			s.Spec.Routes[0].Path = "/sales/v1/deals/{dealId}"
			return k8s.Update(ctx, s)
		}).Should(Succeed())
		sales = waitCatalog("sales", func(c *v1alpha1.APICatalog) bool { return catalogReason(c) == v1alpha1.ReasonInForce })
		Expect(sales.Status.Conflicts).To(BeEmpty())
		waitCatalog("crm", func(c *v1alpha1.APICatalog) bool { return len(c.Status.Conflicts) == 0 })
	})

	It("keeps an app working when a catalog stops offering one of its scopes, and lets it be suspended and deleted", func() {
		crm := crmCatalog("crm")
		Expect(k8s.Create(ctx, crm)).To(Succeed())
		waitCatalog("crm", func(c *v1alpha1.APICatalog) bool { return catalogReason(c) == v1alpha1.ReasonInForce })
		app := newApp(ns, "sync")
		app.Spec.Scopes = []string{"crm.objects.contacts.read", "crm.objects.deals.read"}
		Expect(k8s.Create(ctx, app)).To(Succeed())
		waitFor(ns, "sync", func(a *v1alpha1.PrivateApp) bool {
			return isReady(a) && meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionScopesOffered)
		})

		// The catalog stops offering deals.read (and its route goes too).
		Eventually(func() error {
			c := getCatalog("crm")
			c.Spec.Scopes = c.Spec.Scopes[:1]
			c.Spec.Routes = c.Spec.Routes[:1]
			return k8s.Update(ctx, c)
		}).Should(Succeed())
		app = waitFor(ns, "sync", func(a *v1alpha1.PrivateApp) bool {
			return meta.IsStatusConditionFalse(a.Status.Conditions, v1alpha1.ConditionScopesOffered)
		})
		Expect(isReady(app)).To(BeTrue(), "the app keeps working for the scopes still offered")
		offered := meta.FindStatusCondition(app.Status.Conditions, v1alpha1.ConditionScopesOffered)
		Expect(offered.Reason).To(Equal(v1alpha1.ReasonScopesNotOffered))
		Expect(offered.Message).To(HavePrefix("No APICatalog in force offers crm.objects.deals.read, so the token service grants them no more"))
		expectEvent(ns, "sync", v1alpha1.ReasonScopesNotOffered, corev1.EventTypeWarning)

		patchApp(ns, "sync", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })
		waitReason(ns, "sync", v1alpha1.ReasonSuspended)
		Expect(k8s.Delete(ctx, app)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(app), &v1alpha1.PrivateApp{}))
		}).Should(BeTrue(), "the app is deleted")

		// Without any catalog the condition goes away.
		other := newApp(ns, "other")
		other.Spec.Scopes = []string{"crm.objects.deals.read"}
		Expect(k8s.Create(ctx, other)).To(Succeed())
		waitFor(ns, "other", func(a *v1alpha1.PrivateApp) bool {
			return meta.IsStatusConditionFalse(a.Status.Conditions, v1alpha1.ConditionScopesOffered)
		})
		Expect(k8s.Delete(ctx, getCatalog("crm"))).To(Succeed())
		waitFor(ns, "other", func(a *v1alpha1.PrivateApp) bool {
			return meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionScopesOffered) == nil
		})
	})
})

func crmCatalog(name string) *v1alpha1.APICatalog {
	return &v1alpha1.APICatalog{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.APICatalogSpec{
			Scopes: []v1alpha1.CatalogScope{
				{Name: "crm.objects.contacts.read", Area: "CRM / Contacts"},
				{Name: "crm.objects.deals.read", Access: v1alpha1.ScopeRead},
				{Name: "crm.objects.contacts.write"},
			},
			Routes: []v1alpha1.CatalogRoute{
				{Name: "contacts-get", Methods: []v1alpha1.HTTPMethod{"GET"}, Path: "/crm/v3/objects/contacts/{id}", Scopes: []string{"crm.objects.contacts.read"}},
				{Name: "deals-get", Methods: []v1alpha1.HTTPMethod{"GET"}, Path: "/crm/v3/objects/deals/{id}", Scopes: []string{"crm.objects.deals.read"}},
			},
		},
	}
}

func getCatalog(name string) *v1alpha1.APICatalog {
	c := &v1alpha1.APICatalog{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Name: name}, c)).To(Succeed())
	return c
}

func waitCatalog(name string, ok func(*v1alpha1.APICatalog) bool) *v1alpha1.APICatalog {
	var c *v1alpha1.APICatalog
	EventuallyWithOffset(1, func() bool {
		c = getCatalog(name)
		return c.Status.ObservedGeneration == c.Generation && ok(c)
	}, "10s").Should(BeTrue(), func() string { return fmt.Sprintf("catalog %s never reached the expected state: %+v", name, c.Status) })
	return c
}

func readyOf(c *v1alpha1.APICatalog) *metav1.Condition {
	return meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
}

func catalogReason(c *v1alpha1.APICatalog) string {
	if r := readyOf(c); r != nil {
		return r.Reason
	}
	return ""
}

// catalogEvents lists "type/reason" of the Events about a catalog.
func catalogEvents(name string) []string {
	var evs eventsv1.EventList
	ExpectWithOffset(1, k8s.List(ctx, &evs)).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		if e.Regarding.Kind == "APICatalog" && e.Regarding.Name == name {
			out = append(out, e.Type+"/"+e.Reason)
		}
	}
	return out
}
