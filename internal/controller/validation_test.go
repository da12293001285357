package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// The API server refuses bad objects with the messages written in the CRD
// (OpenAPI and CEL); these are what `kubectl apply` prints.
var _ = Describe("API validation", func() {
	var ns string
	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "valid-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
	})

	DescribeTable("PrivateApp create",
		func(mutate func(*v1alpha1.PrivateApp), message string) {
			app := newUnmanagedAppObject(ns, "app")
			mutate(app)
			expectRefused(app, message)
		},
		Entry("http logo", func(a *v1alpha1.PrivateApp) { a.Spec.LogoURL = "http://example.com/x.png" },
			"logoURL must be an https:// URL"),
		Entry("no scopes", func(a *v1alpha1.PrivateApp) { a.Spec.Scopes = nil }, "spec.scopes: Required value"),
		Entry("a scope that is neither read nor write", func(a *v1alpha1.PrivateApp) { a.Spec.Scopes = []string{"crm.objects.contacts.delete"} },
			`spec.scopes[0]: Invalid value: "crm.objects.contacts.delete"`),
		Entry("the same scope twice", func(a *v1alpha1.PrivateApp) {
			a.Spec.Scopes = []string{"crm.objects.contacts.read", "crm.objects.contacts.read"}
		}, "Duplicate value"),
		Entry("a lifetime under a minute", func(a *v1alpha1.PrivateApp) { a.Spec.TokenLifetime = &metav1.Duration{Duration: time.Second} },
			"tokenLifetime must be at least 1m"),
		Entry("a grace period as long as the interval", func(a *v1alpha1.PrivateApp) {
			a.Spec.Rotation = &v1alpha1.RotationPolicy{
				Interval: metav1.Duration{Duration: 24 * time.Hour}, GracePeriod: &metav1.Duration{Duration: 24 * time.Hour},
			}
		}, "rotation.gracePeriod must be shorter than rotation.interval"),
		Entry("a name too long for the default Secret name", func(a *v1alpha1.PrivateApp) { a.Name = longName(250) },
			"set spec.secretName or use a shorter name"),
		Entry("a display name with a terminal escape", func(a *v1alpha1.PrivateApp) { a.Spec.DisplayName = "Billing \x1b]52;c;cm0gLXJmIH4=\a" },
			"spec.displayName: Invalid value"),
		Entry("a display name of two lines", func(a *v1alpha1.PrivateApp) { a.Spec.DisplayName = "Billing\n  kubectl delete ns prod" },
			"spec.displayName: Invalid value"),
		Entry("a display name with a C1 control", func(a *v1alpha1.PrivateApp) { a.Spec.DisplayName = "Billing \u009b31m" },
			"spec.displayName: Invalid value"),
		Entry("a description with a terminal escape", func(a *v1alpha1.PrivateApp) { a.Spec.Description = "Owned by \x1b[31mred" },
			"spec.description: Invalid value"),
	)

	It("takes a description of lines and tabs, and a display name of any script", func() {
		app := newUnmanagedAppObject(ns, "app")
		app.Spec.DisplayName = "Facturation — 請求 sync"
		app.Spec.Description = "Syncs invoices.\n\tOwner: team-billing"
		Expect(k8s.Create(ctx, app)).To(Succeed())
	})

	It("refuses a change of secretName", func() {
		app := newUnmanagedAppObject(ns, "app")
		Expect(k8s.Create(ctx, app)).To(Succeed())
		app.Spec.SecretName = "elsewhere"
		err := k8s.Update(ctx, app)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("secretName is immutable"))
	})

	DescribeTable("TokenRotation create",
		func(spec v1alpha1.TokenRotationSpec, message string) {
			expectRefused(&v1alpha1.TokenRotation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "rot-"}, Spec: spec}, message)
		},
		Entry("an unknown strategy", v1alpha1.TokenRotationSpec{AppName: "a", Strategy: "Later"}, `Unsupported value: "Later"`),
		Entry("a grace period on an Immediate rotation",
			v1alpha1.TokenRotationSpec{AppName: "a", Strategy: v1alpha1.RotationImmediate, GracePeriod: &metav1.Duration{Duration: time.Hour}},
			"apply to strategy Delayed only"),
		Entry("both grace-period actions",
			v1alpha1.TokenRotationSpec{AppName: "a", Strategy: v1alpha1.RotationDelayed, Cancel: true, ExpireOldTokenNow: true},
			"set either expireOldTokenNow"),
	)

	It("lets a TokenRotation change only its grace-period actions", func() {
		rot := &v1alpha1.TokenRotation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rot"},
			Spec:       v1alpha1.TokenRotationSpec{AppName: "a", Strategy: v1alpha1.RotationDelayed},
		}
		Expect(k8s.Create(ctx, rot)).To(Succeed())
		// Merge patches, as kubectl sends them: the operator writes status
		// meanwhile, so a full update could fail on resourceVersion instead.
		patch := func(p string) error {
			return k8s.Patch(ctx, rot.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(p)))
		}
		err := patch(`{"spec":{"appName":"b"}}`)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("appName, strategy and gracePeriod are immutable"))

		Expect(patch(`{"spec":{"expireOldTokenNow":true}}`)).To(Succeed())
		err = patch(`{"spec":{"expireOldTokenNow":false}}`)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("expireOldTokenNow cannot be undone"))
	})

	DescribeTable("AppNotification create",
		func(spec v1alpha1.AppNotificationSpec, message string) {
			expectRefused(&v1alpha1.AppNotification{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "n-"}, Spec: spec}, message)
		},
		Entry("AppDisconnected without apps",
			v1alpha1.AppNotificationSpec{Event: v1alpha1.EventAppDisconnected, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsEveryone}},
			"apps is required for event AppDisconnected"),
		Entry("a reminder on AppInstalled",
			v1alpha1.AppNotificationSpec{Event: v1alpha1.EventAppInstalled, Reminder: v1alpha1.ReminderDaily, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsEveryone}},
			"reminder applies to event AppDisconnected only"),
		Entry("Specific recipients without users or teams",
			v1alpha1.AppNotificationSpec{Event: v1alpha1.EventAppInstalled, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSpecific}},
			"needs at least one of them"),
		Entry("users for SuperAdmins",
			v1alpha1.AppNotificationSpec{Event: v1alpha1.EventAppInstalled, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSuperAdmins, Users: []string{"bob"}}},
			"recipients.users and recipients.teams are for kind Specific"),
	)

	It("accepts the shipped samples' shapes", func() {
		app := newUnmanagedAppObject(ns, "ok")
		app.Spec.LogoURL = "https://example.com/logo.png"
		app.Spec.TokenLifetime = &metav1.Duration{Duration: 2160 * time.Hour}
		app.Spec.Rotation = &v1alpha1.RotationPolicy{Interval: metav1.Duration{Duration: 4320 * time.Hour}}
		Expect(k8s.Create(ctx, app)).To(Succeed())
	})
})

// expectRefused creates obj and expects the API server to refuse it with a
// message containing message.
func expectRefused(obj client.Object, message string) {
	err := k8s.Create(ctx, obj)
	ExpectWithOffset(1, err).To(HaveOccurred())
	ExpectWithOffset(1, err.Error()).To(ContainSubstring(message))
}

// newUnmanagedAppObject returns an app the suite's manager will not act on.
func newUnmanagedAppObject(ns, name string) *v1alpha1.PrivateApp {
	app := newApp(ns, name)
	app.Labels = map[string]string{unmanagedLabel: "true"}
	return app
}

func longName(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a'
	}
	return string(b)
}
