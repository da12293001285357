package controller

import (
	"fmt"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/hubid"
)

var _ = Describe("HubSpot's numeric ids", func() {
	newNamespace := func() string {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "hub-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		return n.Name
	}
	install := func(ns, name, user string) *v1alpha1.PrivateApp {
		app := newApp(ns, name)
		app.Annotations = map[string]string{v1alpha1.InstalledByAnnotation: user}
		Expect(k8s.Create(ctx, app)).To(Succeed())
		return waitFor(ns, name, func(a *v1alpha1.PrivateApp) bool {
			return isReady(a) && a.Status.AppID > 0 && a.Status.HubID > 0 && a.Status.InstalledByUserID > 0
		})
	}

	It("gives one hubId per namespace, one userId per user and a new appId per app, never twice", func() {
		nsA, nsB := newNamespace(), newNamespace()
		a1, a2 := install(nsA, "crm", "alice@example.com"), install(nsA, "billing", "alice@example.com")
		b1 := install(nsB, "crm", "bob@example.com")

		Expect(a1.Status.HubID).To(Equal(a2.Status.HubID), "two apps of one namespace")
		Expect(b1.Status.HubID).NotTo(Equal(a1.Status.HubID), "another namespace")
		Expect(a1.Status.InstalledByUserID).To(Equal(a2.Status.InstalledByUserID), "one user's two apps")
		Expect(b1.Status.InstalledByUserID).NotTo(Equal(a1.Status.InstalledByUserID), "another user")
		ids := map[int64]string{}
		for what, id := range map[string]int64{
			"a1 app": a1.Status.AppID, "a2 app": a2.Status.AppID, "b1 app": b1.Status.AppID,
			"A hub": a1.Status.HubID, "B hub": b1.Status.HubID, "alice": a1.Status.InstalledByUserID, "bob": b1.Status.InstalledByUserID,
		} {
			Expect(ids).NotTo(HaveKey(id), "%s has the id of %s", what, ids[id])
			Expect(id).To(BeNumerically(">=", hubid.First))
			Expect(id).To(BeNumerically("<", int64(1)<<53), "JavaScript reads it exactly")
			ids[id] = what
		}

		By("an app deleted and made again under its name is a new app")
		Expect(k8s.Delete(ctx, a1)).To(Succeed())
		Eventually(func() bool {
			return k8s.Get(ctx, client.ObjectKeyFromObject(a1), &v1alpha1.PrivateApp{}) != nil
		}).Should(BeTrue())
		again := install(nsA, "crm", "alice@example.com")
		Expect(again.Status.AppID).NotTo(Equal(a1.Status.AppID))
		Expect(again.Status.HubID).To(Equal(a1.Status.HubID))
		Expect(again.Status.InstalledByUserID).To(Equal(a1.Status.InstalledByUserID))

		By("the registry remembers accounts and users by UID and digest, never by name")
		cm := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, idRegistryKey, cm)).To(Succeed())
		for k := range cm.Data {
			Expect(k).NotTo(ContainSubstring("alice"))
			Expect(k).NotTo(ContainSubstring(nsA))
		}
	})

	It("never gives one id twice when registries race", func() {
		key := types.NamespacedName{Namespace: "default", Name: "race-ids"}
		apps, users := make([][]int64, 4), make([]map[string]int64, 4)
		errs := make(chan error, 80)
		var wg sync.WaitGroup
		for w := range 4 {
			// Four processes' registries, each with its own memory of the ConfigMap.
			r := &hubid.Registry{Reader: k8s, Writer: k8s, Key: key}
			users[w] = map[string]int64{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					id, err := r.NewApp(ctx)
					errs <- err
					apps[w] = append(apps[w], id)
					name := fmt.Sprintf("user-%d", i%3)
					user, err := r.User(ctx, name)
					errs <- err
					users[w][name] = user
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			Expect(err).NotTo(HaveOccurred())
		}
		seen := map[int64]string{}
		for w := range 4 {
			for _, id := range apps[w] {
				Expect(seen).NotTo(HaveKey(id), "worker %d got app id %d, given before to %s", w, id, seen[id])
				seen[id] = fmt.Sprintf("worker %d", w)
			}
		}
		for name, id := range users[0] {
			for w := 1; w < 4; w++ {
				Expect(users[w][name]).To(Equal(id), "%s has one id, whichever registry asks", name)
			}
			Expect(seen).NotTo(HaveKey(id), "%s got an app's id", name)
			seen[id] = name
		}
		Expect(seen).To(HaveLen(40 + 3))
	})

	It("counts on above every id in use when the registry is lost", func() {
		first := install(newNamespace(), "crm", "carol@example.com")
		largest, err := hubid.LargestInUse(ctx, k8s)
		Expect(err).NotTo(HaveOccurred())
		Expect(largest).To(BeNumerically(">=", first.Status.AppID))
		Expect(k8s.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: idRegistryKey.Namespace, Name: idRegistryKey.Name}})).To(Succeed())

		after := install(newNamespace(), "crm", "dave@example.com")
		for _, id := range []int64{after.Status.AppID, after.Status.HubID, after.Status.InstalledByUserID} {
			Expect(id).To(BeNumerically(">", largest), "an id given again after the registry was lost")
		}
		cm := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, idRegistryKey, cm)).To(Succeed())
		Expect(cm.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "privateapp-operator"))
	})

	It("says how to repair a registry whose counter is gone", func() {
		key := types.NamespacedName{Namespace: "default", Name: "broken-ids"}
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Data: map[string]string{"next": "seven"}})).To(Succeed())
		_, err := (&hubid.Registry{Reader: k8s, Writer: k8s, Key: key}).NewApp(ctx)
		Expect(err).To(MatchError(ContainSubstring("set it above every id in use")))
	})
})
