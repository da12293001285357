package controller

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
)

// Each kind's status has one writer, and managedFields show it: after a
// whole life of an app (token, usage, an Immediate and a Delayed rotation,
// an uninstall notice, deletion), every field of each status is owned by
// the one field manager designed for it.
var _ = Describe("Status writers", func() {
	It("are one field manager per kind's status, and the token service owns only usage and lastActivityTime", func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "writers-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns := n.Name
		DeferCleanup(func() {
			Expect(k8s.DeleteAllOf(ctx, &v1alpha1.AppNotification{}, client.InNamespace(ns))).To(Succeed())
		})
		createNotification(ns, "removals", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppUninstalled, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSuperAdmins},
		})
		waitActive(ns, "removals")
		Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
		app := waitReady(ns, "crm")

		usage := tokenservice.NewUsage()
		flusher := &tokenservice.Flusher{Client: k8s, Usage: usage, Clock: fakeClock, Log: logr.Discard()}
		flush := func(calls int64) {
			usage.Record(client.ObjectKeyFromObject(app), fakeClock.Now(), true)
			// A flush that meets a conflict keeps its counts for the next.
			Eventually(func() int64 {
				flusher.Flush(ctx)
				if u := getApp(ns, "crm").Status.Usage; u != nil {
					return u.CallsToday
				}
				return 0
			}).Should(Equal(calls))
		}
		flush(1)

		createRotation(ns, "leak", v1alpha1.RotationImmediate, nil, "crm")
		waitPhase(ns, "leak", v1alpha1.RotationCompleted)
		createRotation(ns, "planned", v1alpha1.RotationDelayed, nil, "crm")
		waitPhase(ns, "planned", v1alpha1.RotationGracePeriod)
		patchRotation(ns, "planned", `{"spec":{"expireOldTokenNow":true}}`)
		waitPhase(ns, "planned", v1alpha1.RotationCompleted)
		flush(2)
		// The operator writes status after the token service: its patch
		// must not take usage or lastActivityTime.
		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) { a.Spec.Scopes = append(a.Spec.Scopes, "crm.objects.deals.read") })
		Eventually(func() []string { return getApp(ns, "crm").Status.Scopes }).Should(ContainElement("crm.objects.deals.read"))

		app = getApp(ns, "crm")
		Expect(app.Status.LastActivityTime).NotTo(BeNil())
		owners := statusOwners(app)
		Expect(slices.Sorted(maps.Keys(owners))).To(Equal([]string{PrivateAppFieldOwner, tokenservice.FieldOwner}))
		Expect(owners[tokenservice.FieldOwner]).To(ConsistOf("lastActivityTime", "usage"))
		Expect(owners[PrivateAppFieldOwner]).To(ContainElements("token", "conditions", "connection", "activity"))
		Expect(owners[PrivateAppFieldOwner]).NotTo(ContainElement(BeElementOf("usage", "lastActivityTime")))
		for _, name := range []string{"leak", "planned"} {
			Expect(statusOwners(getRotation(ns, name))).To(HaveKey(TokenRotationFieldOwner), "TokenRotation %s", name)
			Expect(statusOwners(getRotation(ns, name))).To(HaveLen(1), "TokenRotation %s", name)
		}

		Expect(k8s.Delete(ctx, app)).To(Succeed())
		Eventually(func() []v1alpha1.PrivateApp { return listApps(ns) }, 10*time.Second).Should(BeEmpty())
		notice := getNotification(ns, "removals")
		Expect(slices.ContainsFunc(notice.Status.Deliveries, func(d v1alpha1.Delivery) bool {
			return d.Event == v1alpha1.EventAppUninstalled && d.AppUID == string(app.UID)
		})).To(BeTrue(), "the uninstall is recorded")
		Expect(statusOwners(notice)).To(HaveKey(AppNotificationFieldOwner))
		Expect(statusOwners(notice)).To(HaveLen(1))
	})
})

// statusOwners maps each field manager of obj's status subresource to the
// status fields it owns.
func statusOwners(obj client.Object) map[string][]string {
	owners := map[string][]string{}
	for _, m := range obj.GetManagedFields() {
		if m.Subresource != "status" || m.FieldsV1 == nil {
			continue
		}
		var fields map[string]map[string]any
		ExpectWithOffset(1, json.Unmarshal(m.FieldsV1.GetRawBytes(), &fields)).To(Succeed())
		for f := range fields["f:status"] {
			if name, ok := strings.CutPrefix(f, "f:"); ok {
				owners[m.Manager] = append(owners[m.Manager], name)
			}
		}
	}
	return owners
}
