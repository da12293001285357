package webhook

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// catalogOffering is a catalog that offers scopes and has no routes.
func catalogOffering(name string, scopes ...string) *v1alpha1.APICatalog {
	c := &v1alpha1.APICatalog{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.APICatalogSpec{PathPrefix: "/" + name}}
	for _, s := range scopes {
		c.Spec.Scopes = append(c.Spec.Scopes, v1alpha1.CatalogScope{Name: s})
	}
	return c
}

func route(name, method, path string, scopes ...string) v1alpha1.CatalogRoute {
	return v1alpha1.CatalogRoute{Name: name, Methods: []v1alpha1.HTTPMethod{v1alpha1.HTTPMethod(method)}, Path: path, Scopes: scopes}
}

var _ = Describe("APICatalog admission", func() {
	cleanup := func(names ...string) {
		DeferCleanup(func() {
			for _, n := range names {
				Expect(client.IgnoreNotFound(admin.Delete(ctx, &v1alpha1.APICatalog{ObjectMeta: metav1.ObjectMeta{Name: n}}))).To(Succeed())
			}
		})
	}

	It("refuses what would keep a catalog out of force, saying which field and how to fix it", func() {
		cleanup("crm")
		tests := []struct {
			name    string
			edit    func(*v1alpha1.APICatalog)
			message string
		}{
			{"a template that does not parse", func(c *v1alpha1.APICatalog) {
				c.Spec.Routes = []v1alpha1.CatalogRoute{route("r", "GET", "/crm/{id", "crm.a.read")}
			},
				`spec.routes[0].path: Invalid value: the path template "/crm/{id" has the segment "{id": a wildcard must be a whole segment`},
			{"a route scope the catalog does not offer", func(c *v1alpha1.APICatalog) {
				c.Spec.Routes = []v1alpha1.CatalogRoute{route("r", "GET", "/crm/x", "crm.b.read")}
			},
				`spec.routes[0].scopes[0]: Invalid value: the route needs the scope "crm.b.read", which the catalog does not offer; add it to spec.scopes or fix the name`},
			{"a route outside the prefix", func(c *v1alpha1.APICatalog) { c.Spec.Routes = []v1alpha1.CatalogRoute{route("r", "GET", "/other/x")} },
				`outside the catalog's pathPrefix "/crm"`},
			{"two routes of the catalog that conflict", func(c *v1alpha1.APICatalog) {
				c.Spec.Scopes = append(c.Spec.Scopes, v1alpha1.CatalogScope{Name: "crm.b.read"})
				c.Spec.Routes = []v1alpha1.CatalogRoute{route("by-id", "GET", "/crm/{id}/c", "crm.a.read"), route("by-name", "GET", "/crm/b/{name}", "crm.b.read")}
			}, `route "by-name" (/crm/b/{name}) of APICatalog "crm" and route "by-id" (/crm/{id}/c) of APICatalog "crm" both match GET /crm/b/c`},
			{"a duplicate scope", func(c *v1alpha1.APICatalog) { c.Spec.Scopes = append(c.Spec.Scopes, c.Spec.Scopes[0]) },
				`spec.scopes[1]: Duplicate value`},
			{"an empty method list", func(c *v1alpha1.APICatalog) {
				c.Spec.Routes = []v1alpha1.CatalogRoute{{Name: "r", Path: "/crm/x", Methods: []v1alpha1.HTTPMethod{}}}
			}, `spec.routes[0].methods: Invalid value: 0: spec.routes[0].methods in body should have at least 1 items`},
			{"an odd method", func(c *v1alpha1.APICatalog) { c.Spec.Routes = []v1alpha1.CatalogRoute{route("r", "FETCH", "/crm/x")} },
				`spec.routes[0].methods[0]: Unsupported value: "FETCH"`},
			{"access that disagrees with the name", func(c *v1alpha1.APICatalog) { c.Spec.Scopes[0].Access = v1alpha1.ScopeWrite },
				"access must agree with the scope name: Read for a name ending in .read"},
			{"a huge catalog", func(c *v1alpha1.APICatalog) {
				for i := range 2001 {
					c.Spec.Routes = append(c.Spec.Routes, route(fmt.Sprintf("r%d", i), "GET", fmt.Sprintf("/crm/%d", i)))
				}
			}, "spec.routes: Too many: 2001: must have at most 2000 items"},
		}
		for _, tt := range tests {
			By(tt.name)
			c := catalogOffering("crm", "crm.a.read")
			tt.edit(c)
			err := admin.Create(ctx, c)
			Expect(err).To(HaveOccurred(), tt.name)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%s: %v", tt.name, err)
			Expect(err.Error()).To(ContainSubstring(tt.message), tt.name)
		}
	})

	It("refuses a route that conflicts with another catalog's, naming both catalogs and routes", func() {
		cleanup("deals", "sales")
		deals := catalogOffering("deals", "deals.read")
		deals.Spec.PathPrefix = ""
		deals.Spec.Routes = []v1alpha1.CatalogRoute{route("deals-get", "GET", "/crm/v3/objects/deals/{id}", "deals.read")}
		Expect(admin.Create(ctx, deals)).To(Succeed())

		sales := catalogOffering("sales", "sales.read")
		sales.Spec.PathPrefix = ""
		sales.Spec.Routes = []v1alpha1.CatalogRoute{
			route("batch", "GET", "/crm/v3/objects/deals/batch", "sales.read"), // more specific: fine
			route("any", "GET", "/crm/v3/objects/{type}/{id}", "sales.read"),   // less specific: fine
			route("deal", "GET", "/crm/v3/objects/deals/{dealId}", "sales.read"),
		}
		err := admin.Create(ctx, sales)
		expectRefused(err, `spec.routes[deal]: Forbidden: route "deal" (/crm/v3/objects/deals/{dealId}) of APICatalog "sales" and route "deals-get" `+
			`(/crm/v3/objects/deals/{id}) of APICatalog "deals" both match GET /crm/v3/objects/deals/x and neither is more specific`)
		Expect(err.Error()).NotTo(ContainSubstring(`"batch"`))
		Expect(err.Error()).NotTo(ContainSubstring(`"any"`))

		// The same needs are no conflict.
		sales.Spec.Routes[2].Scopes = nil
		sales.Spec.Scopes = append(sales.Spec.Scopes, v1alpha1.CatalogScope{Name: "deals.read"})
		sales.Spec.Routes[2].Scopes = []string{"deals.read"}
		Expect(admin.Create(ctx, sales)).To(Succeed())
	})

	It("lets an app that holds a scope no catalog offers any more be edited, suspended and deleted, and warns who edits the catalog", func() {
		cleanup("tickets")
		Expect(admin.Create(ctx, catalogOffering("tickets", "crm.objects.tickets.read", "crm.objects.tickets.write"))).To(Succeed())
		Eventually(func() bool { return catalogs.Current().Offers("crm.objects.tickets.write") }).Should(BeTrue())
		ns := newNamespace()
		a := app(ns, "helpdesk", "crm.objects.tickets.read", "crm.objects.tickets.write")
		a.Finalizers = []string{"privateapps.dev/uninstall"}
		Expect(admin.Create(ctx, a)).To(Succeed())

		warnings.take()
		Eventually(func() error {
			c := &v1alpha1.APICatalog{}
			Expect(admin.Get(ctx, types.NamespacedName{Name: "tickets"}, c)).To(Succeed())
			c.Spec.Scopes = c.Spec.Scopes[:1]
			return warned.Update(ctx, c)
		}).Should(Succeed())
		Expect(warnings.take()).To(ConsistOf(fmt.Sprintf("after this change of APICatalog tickets no catalog offers scopes that apps hold: "+
			"%s/helpdesk (crm.objects.tickets.write); the token service stops granting them and those apps show the condition ScopesOffered=False", ns)))
		Eventually(func() bool { return catalogs.Current().Offers("crm.objects.tickets.write") }).Should(BeFalse())

		// Suspending, editing other fields and removing a scope all pass.
		patch := func(p string) error {
			return admin.Patch(ctx, &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "helpdesk"}}, client.RawPatch(types.MergePatchType, []byte(p)))
		}
		Expect(patch(`{"spec":{"suspend":true}}`)).To(Succeed())
		Expect(patch(`{"spec":{"displayName":"Helpdesk (old)"}}`)).To(Succeed())
		// Adding it back is adding a scope no catalog offers.
		Expect(patch(`{"spec":{"scopes":["crm.objects.tickets.read"]}}`)).To(Succeed())
		expectRefused(patch(`{"spec":{"scopes":["crm.objects.tickets.read","crm.objects.tickets.write"]}}`),
			`spec.scopes[1]: Invalid value: "crm.objects.tickets.write": no APICatalog offers this scope; the closest offered scopes are crm.objects.tickets.read`)
		Expect(patch(`{"spec":{"scopes":["crm.objects.tickets.read","crm.objects.tickets.write"]}}`)).NotTo(Succeed())

		// Deleting waits for the finalizer; removing it is an update, and passes.
		a2 := app(ns, "legacy", "crm.objects.tickets.read")
		a2.Finalizers = []string{"privateapps.dev/uninstall"}
		Expect(admin.Create(ctx, a2)).To(Succeed())
		Eventually(func() error {
			c := &v1alpha1.APICatalog{}
			Expect(admin.Get(ctx, types.NamespacedName{Name: "tickets"}, c)).To(Succeed())
			c.Spec.Scopes[0].Name = "crm.objects.tickets.write"
			return admin.Update(ctx, c)
		}).Should(Succeed())
		Eventually(func() bool { return catalogs.Current().Offers("crm.objects.tickets.read") }).Should(BeFalse())
		for _, name := range []string{"helpdesk", "legacy"} {
			Expect(admin.Delete(ctx, &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
			Expect(admin.Patch(ctx, &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
				client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed(), name)
			Eventually(func() bool {
				return apierrors.IsNotFound(admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &v1alpha1.PrivateApp{}))
			}).Should(BeTrue(), name)
		}
	})

	It("warns when deleting the catalog that offered scopes apps hold", func() {
		cleanup("quotes")
		Expect(admin.Create(ctx, catalogOffering("quotes", "crm.objects.quotes.read"))).To(Succeed())
		Eventually(func() bool { return catalogs.Current().Offers("crm.objects.quotes.read") }).Should(BeTrue())
		ns := newNamespace()
		Expect(admin.Create(ctx, app(ns, "cpq", "crm.objects.quotes.read"))).To(Succeed())
		warnings.take()
		Expect(warned.Delete(ctx, &v1alpha1.APICatalog{ObjectMeta: metav1.ObjectMeta{Name: "quotes"}})).To(Succeed())
		Expect(strings.Join(warnings.take(), "\n")).To(ContainSubstring(ns + "/cpq (crm.objects.quotes.read)"))
	})
})
