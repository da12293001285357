package controller

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

var _ = Describe("PrivateApp", func() {
	var ns string

	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "papp-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
	})

	It("issues a token into a Secret and records only its digest", func() {
		app := newApp(ns, "billing-sync")
		app.Annotations = map[string]string{v1alpha1.InstalledByAnnotation: "alice@example.com"}
		app.Spec.SecretTemplate = &v1alpha1.SecretTemplate{
			Labels:      map[string]string{"team": "billing", v1alpha1.ManagedByLabel: "someone-else"},
			Annotations: map[string]string{"reflector/allowed": "true"},
		}
		Expect(k8s.Create(ctx, app)).To(Succeed())
		app = waitReady(ns, "billing-sync")

		Expect(app.Status.Connection).To(Equal(v1alpha1.ConnectionConnected))
		Expect(app.Status.InstalledBy).To(Equal("alice@example.com"))
		Expect(app.Status.InstalledAt).NotTo(BeNil())
		Expect(app.Status.ObservedGeneration).To(Equal(app.Generation))
		Expect(app.Status.SecretName).To(Equal("billing-sync-token"))
		Expect(app.Status.Scopes).To(Equal([]string{"crm.objects.contacts.read", "crm.objects.contacts.write"}))
		Expect(app.Status.Token.IssuedAt.Time).To(BeTemporally("==", fakeClock.Now()))
		Expect(app.Status.Token.ExpiresAt).To(BeNil())
		Expect(app.Status.Activity).To(HaveLen(1))
		Expect(app.Status.Activity[0].Type).To(Equal(v1alpha1.ActivityInstalled))
		Expect(app.Status.Activity[0].User).To(Equal("alice@example.com"))

		secret := getSecret(ns, "billing-sync-token")
		Expect(secret.Type).To(Equal(v1alpha1.SecretType))
		Expect(secret.Data).To(HaveLen(1), "only the token key")
		Expect(digestOf(secret, v1alpha1.SecretTokenKey)).To(Equal(app.Status.Token.Digest))
		Expect(secret.Labels).To(Equal(map[string]string{
			v1alpha1.AppNameLabel:   "billing-sync",
			v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue,
			"team":                  "billing",
		}))
		Expect(secret.Annotations).To(HaveKeyWithValue("reflector/allowed", "true"))
		Expect(metav1.IsControlledBy(secret, app)).To(BeTrue())

		expectEvent(ns, "billing-sync", "Installed", corev1.EventTypeNormal)
	})

	It("writes the token to spec.secretName", func() {
		app := newApp(ns, "crm")
		app.Spec.SecretName = "crm-credentials"
		Expect(k8s.Create(ctx, app)).To(Succeed())
		app = waitReady(ns, "crm")
		Expect(digestOf(getSecret(ns, "crm-credentials"), v1alpha1.SecretTokenKey)).To(Equal(app.Status.Token.Digest))
	})

	It("leaves a Secret it does not own alone and reports SecretConflict", func() {
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "crm-token"},
			StringData: map[string]string{"password": "hunter2"},
		}
		Expect(k8s.Create(ctx, foreign)).To(Succeed())
		Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())

		app := waitReason(ns, "crm", v1alpha1.ReasonSecretConflict)
		Expect(app.Status.Connection).To(Equal(v1alpha1.ConnectionError))
		Expect(readyMessage(app)).To(ContainSubstring(`Secret "crm-token" in namespace "` + ns + `"`))
		Expect(app.Status.Token).To(BeNil())
		Consistently(func() map[string][]byte { return getSecret(ns, "crm-token").Data }, "500ms").
			Should(Equal(map[string][]byte{"password": []byte("hunter2")}))
		expectEvent(ns, "crm", v1alpha1.ReasonSecretConflict, corev1.EventTypeWarning)

		By("the other Secret going away, the app gets its token at the next check")
		Expect(k8s.Delete(ctx, foreign)).To(Succeed())
		fakeClock.Step(conflictRecheck)
		waitReady(ns, "crm")
	})

	It("disconnects a suspended app and reconnects it with the same token", func() {
		Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
		digest := waitReady(ns, "crm").Status.Token.Digest

		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })
		app := waitReason(ns, "crm", v1alpha1.ReasonSuspended)
		Expect(app.Status.Connection).To(Equal(v1alpha1.ConnectionDisconnected))
		Expect(app.Status.Token.Digest).To(Equal(digest))
		Expect(lastActivity(app)).To(Equal(v1alpha1.ActivityDisconnected))

		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = false })
		app = waitReady(ns, "crm")
		Expect(app.Status.Connection).To(Equal(v1alpha1.ConnectionConnected))
		Expect(app.Status.Token.Digest).To(Equal(digest))
		Expect(digestOf(getSecret(ns, "crm-token"), v1alpha1.SecretTokenKey)).To(Equal(digest))
		Expect(lastActivity(app)).To(Equal(v1alpha1.ActivityReconnected))
		expectEvent(ns, "crm", "Disconnected", corev1.EventTypeNormal)
		expectEvent(ns, "crm", "Reconnected", corev1.EventTypeNormal)
	})

	It("keeps the token when scopes change and records the change", func() {
		Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
		digest := waitReady(ns, "crm").Status.Token.Digest

		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) {
			a.Spec.Scopes = []string{"crm.objects.contacts.read", "crm.schemas.companies.write"}
		})
		Eventually(func(g Gomega) {
			app := getApp(ns, "crm")
			g.Expect(app.Status.ObservedGeneration).To(Equal(app.Generation))
			g.Expect(app.Status.Scopes).To(Equal([]string{"crm.objects.contacts.read", "crm.schemas.companies.write"}))
			g.Expect(app.Status.Token.Digest).To(Equal(digest))
			g.Expect(lastActivity(app)).To(Equal(v1alpha1.ActivityScopesChanged))
			g.Expect(app.Status.Activity[len(app.Status.Activity)-1].Message).To(
				Equal("Scopes changed: added [crm.schemas.companies.write], removed [crm.objects.contacts.write]; the token is unchanged"))
		}).Should(Succeed())
	})

	It("expires a token exactly at the end of spec.tokenLifetime, and for good", func() {
		app := newApp(ns, "short-lived")
		app.Spec.TokenLifetime = &metav1.Duration{Duration: time.Hour}
		Expect(k8s.Create(ctx, app)).To(Succeed())
		app = waitReady(ns, "short-lived")
		Expect(app.Status.Token.ExpiresAt).NotTo(BeNil())
		expiry := app.Status.Token.ExpiresAt.Time
		Expect(expiry).To(BeTemporally("==", app.Status.Token.IssuedAt.Add(time.Hour)))

		fakeClock.SetTime(expiry.Add(-time.Nanosecond))
		Consistently(func() v1alpha1.ConnectionState { return getApp(ns, "short-lived").Status.Connection }, "1s").
			Should(Equal(v1alpha1.ConnectionConnected))

		fakeClock.SetTime(expiry)
		app = waitReason(ns, "short-lived", v1alpha1.ReasonTokenExpired)
		Expect(app.Status.Connection).To(Equal(v1alpha1.ConnectionExpired))
		Expect(lastActivity(app)).To(Equal(v1alpha1.ActivityTokenExpired))
		Expect(readyMessage(app)).To(ContainSubstring("create a TokenRotation"))

		By("lengthening the lifetime afterwards, the token stays expired")
		patchApp(ns, "short-lived", func(a *v1alpha1.PrivateApp) { a.Spec.TokenLifetime = &metav1.Duration{Duration: 100 * time.Hour} })
		Eventually(func() int64 { a := getApp(ns, "short-lived"); return a.Status.ObservedGeneration - a.Generation }).Should(BeZero())
		app = getApp(ns, "short-lived")
		Expect(app.Status.Connection).To(Equal(v1alpha1.ConnectionExpired))
		Expect(app.Status.Token.ExpiresAt.Time).To(BeTemporally("==", expiry))
	})

	It("shortening spec.tokenLifetime applies to the current token", func() {
		app := newApp(ns, "crm")
		app.Spec.TokenLifetime = &metav1.Duration{Duration: 1000 * time.Hour}
		Expect(k8s.Create(ctx, app)).To(Succeed())
		issued := waitReady(ns, "crm").Status.Token.IssuedAt.Time
		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) { a.Spec.TokenLifetime = &metav1.Duration{Duration: time.Minute} })
		Eventually(func() *metav1.Time { return getApp(ns, "crm").Status.Token.ExpiresAt }).
			Should(HaveField("Time", BeTemporally("==", issued.Add(time.Minute))))
	})

	Context("when the Secret is changed out of band", func() {
		It("re-creates a deleted Secret with a new token and keeps the old one valid for the grace period", func() {
			Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
			old := waitReady(ns, "crm").Status.Token.Digest

			Expect(k8s.Delete(ctx, getSecret(ns, "crm-token"))).To(Succeed())
			app := waitFor(ns, "crm", func(a *v1alpha1.PrivateApp) bool {
				return a.Status.Token.Digest != old && a.Status.Token.Previous != nil
			})
			Expect(app.Status.Token.Previous.Digest).To(Equal(old))
			Expect(app.Status.Token.Previous.ExpiresAt.Time).To(BeTemporally("==", fakeClock.Now().Add(DefaultGracePeriod)))
			Expect(app.Status.Token.Previous.Reason).To(Equal("SecretRepaired"))
			Expect(digestOf(getSecret(ns, "crm-token"), v1alpha1.SecretTokenKey)).To(Equal(app.Status.Token.Digest))
			Expect(lastActivity(app)).To(Equal(v1alpha1.ActivitySecretRepaired))
			expectEvent(ns, "crm", "SecretRepaired", corev1.EventTypeWarning)
			Expect(isReady(app)).To(BeTrue())

			By("the grace period ending, the old token leaves status")
			fakeClock.Step(DefaultGracePeriod)
			app = waitFor(ns, "crm", func(a *v1alpha1.PrivateApp) bool { return a.Status.Token.Previous == nil })
			Expect(lastActivity(app)).To(Equal(v1alpha1.ActivityOldTokenExpired))
		})

		It("replaces a token someone wrote into the Secret", func() {
			Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
			old := waitReady(ns, "crm").Status.Token.Digest
			planted, err := token.New()
			Expect(err).NotTo(HaveOccurred())

			secret := getSecret(ns, "crm-token")
			secret.Data[v1alpha1.SecretTokenKey] = []byte(planted.Reveal())
			Expect(k8s.Update(ctx, secret)).To(Succeed())

			app := waitFor(ns, "crm", func(a *v1alpha1.PrivateApp) bool { return a.Status.Token.Digest != old })
			Expect(app.Status.Token.Digest).NotTo(Equal(planted.Digest().String()), "a planted token must never be adopted")
			Expect(app.Status.Token.Previous.Digest).To(Equal(old))
			Expect(digestOf(getSecret(ns, "crm-token"), v1alpha1.SecretTokenKey)).To(Equal(app.Status.Token.Digest))
		})

		It("puts back labels and removes stray keys without changing the token", func() {
			Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
			digest := waitReady(ns, "crm").Status.Token.Digest

			secret := getSecret(ns, "crm-token")
			secret.Labels = map[string]string{"unrelated": "x"}
			secret.Data["extra"] = []byte("x")
			Expect(k8s.Update(ctx, secret)).To(Succeed())

			Eventually(func(g Gomega) {
				s := getSecret(ns, "crm-token")
				g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.ManagedByLabel, v1alpha1.ManagedByValue))
				g.Expect(s.Labels).NotTo(HaveKey("unrelated"))
				g.Expect(s.Data).NotTo(HaveKey("extra"))
				g.Expect(digestOf(s, v1alpha1.SecretTokenKey)).To(Equal(digest))
			}).Should(Succeed())
			Expect(getApp(ns, "crm").Status.Token.Previous).To(BeNil())
		})
	})

	It("records the uninstall and removes the Secret when the app is deleted", func() {
		Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
		waitReady(ns, "crm")
		Expect(k8s.Delete(ctx, getApp(ns, "crm"))).To(Succeed())

		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "crm"}, &v1alpha1.PrivateApp{}))
		}).Should(BeTrue())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "crm-token"}, &corev1.Secret{}))).To(BeTrue())
		expectEvent(ns, "crm", "Uninstalled", corev1.EventTypeNormal)
	})

	Context("under the namespace cap", func() {
		It("gives tokens to exactly the 20 oldest of 25 apps created at once, and the next slot to the oldest waiting", func() {
			var wg sync.WaitGroup
			for i := range 25 {
				wg.Add(1)
				go func() {
					defer GinkgoRecover()
					defer wg.Done()
					Expect(k8s.Create(ctx, newApp(ns, fmt.Sprintf("app-%c", 'a'+(i*7)%25)))).To(Succeed())
				}()
			}
			wg.Wait()

			var apps []v1alpha1.PrivateApp
			Eventually(func(g Gomega) {
				apps = listApps(ns)
				g.Expect(apps).To(HaveLen(25))
				sortByAge(apps)
				for i, a := range apps {
					if i < 20 {
						g.Expect(a.Status.Token).NotTo(BeNil(), "%s is number %d by age", a.Name, i+1)
						g.Expect(readyReason(&a)).To(Equal(v1alpha1.ReasonTokenIssued))
						continue
					}
					g.Expect(a.Status.Token).To(BeNil(), "%s is number %d by age", a.Name, i+1)
					g.Expect(a.Status.Connection).To(Equal(v1alpha1.ConnectionPending))
					g.Expect(readyMessage(&a)).To(HavePrefix(fmt.Sprintf(
						"Namespace %q has 20 private apps with tokens and the limit is 20; this app is number %d in line", ns, i-19)))
				}
			}, "30s").Should(Succeed())
			for _, a := range apps[20:] {
				Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: a.Name + "-token"}, &corev1.Secret{}))).To(BeTrue())
			}
			expectEvent(ns, apps[24].Name, v1alpha1.ReasonAppLimitExceeded, corev1.EventTypeWarning)

			By("deleting an app with a token, the oldest waiting app gets it")
			Expect(k8s.Delete(ctx, &apps[3])).To(Succeed())
			waitReady(ns, apps[20].Name)
			Consistently(func() []string {
				var waiting []string
				for _, a := range listApps(ns) {
					if a.Status.Token == nil {
						waiting = append(waiting, a.Name)
					}
				}
				sort.Strings(waiting)
				return waiting
			}, "2s").Should(Equal(sortedNames(apps[21:])))
		})
	})

	Context("after a crash", func() {
		// Each test builds by hand the state a manager killed between two
		// writes leaves behind, then hands the app to the manager.
		It("replaces a first token written to the Secret before its digest reached status", func() {
			app := newUnmanagedApp(ns, "crm")
			unrecorded := mustToken()
			createTokenSecret(app, unrecorded, fakeClock.Now())

			handOver(app)
			app = waitReady(ns, "crm")
			Expect(app.Status.Token.Digest).NotTo(Equal(unrecorded.Digest().String()), "a token status never recorded is never adopted")
			Expect(app.Status.Token.Previous).To(BeNil(), "it never worked, so it gets no grace period")
			Expect(app.Status.Activity).To(HaveLen(1))
			Expect(digestOf(getSecret(ns, "crm-token"), v1alpha1.SecretTokenKey)).To(Equal(app.Status.Token.Digest))
		})

		It("replaces a token that was written during a repair but never recorded", func() {
			app := newUnmanagedApp(ns, "crm")
			known, unrecorded := mustToken(), mustToken()
			createTokenSecret(app, unrecorded, fakeClock.Now())
			app.Status.Token = &v1alpha1.TokenStatus{Digest: known.Digest().String(), IssuedAt: metav1.NewTime(fakeClock.Now())}
			app.Status.InstalledAt = &app.Status.Token.IssuedAt
			Expect(k8s.Status().Update(ctx, app)).To(Succeed())

			handOver(app)
			app = waitFor(ns, "crm", func(a *v1alpha1.PrivateApp) bool { return a.Status.Token.Previous != nil })
			Expect(app.Status.Token.Previous.Digest).To(Equal(known.Digest().String()))
			Expect(app.Status.Token.Digest).NotTo(BeElementOf(known.Digest().String(), unrecorded.Digest().String()))
			Expect(digestOf(getSecret(ns, "crm-token"), v1alpha1.SecretTokenKey)).To(Equal(app.Status.Token.Digest))
		})

		It("drops from status a previous token already removed from the Secret", func() {
			app := newUnmanagedApp(ns, "crm")
			current, previous := mustToken(), mustToken()
			createTokenSecret(app, current, fakeClock.Now())
			app.Status.Token = &v1alpha1.TokenStatus{
				Digest: current.Digest().String(), IssuedAt: metav1.NewTime(fakeClock.Now()),
				Previous: &v1alpha1.PreviousTokenStatus{Digest: previous.Digest().String(), ExpiresAt: metav1.NewTime(fakeClock.Now())},
			}
			app.Status.InstalledAt = &app.Status.Token.IssuedAt
			app.Status.Scopes = slices.Sorted(slices.Values(app.Spec.Scopes))
			Expect(k8s.Status().Update(ctx, app)).To(Succeed())

			handOver(app)
			app = waitFor(ns, "crm", func(a *v1alpha1.PrivateApp) bool { return a.Status.Token.Previous == nil })
			Expect(app.Status.Token.Digest).To(Equal(current.Digest().String()))
			Expect(lastActivity(app)).To(Equal(v1alpha1.ActivityOldTokenExpired))
		})
	})

	It("finds every token the suite issued in the leak check's collection", func() {
		// The leak check after each test is only as good as its collection.
		Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
		digest := waitReady(ns, "crm").Status.Token.Digest
		Eventually(func() int { return tokens.count() }).Should(BeNumerically(">", 0))
		secret := getSecret(ns, "crm-token")
		Expect(digestOf(secret, v1alpha1.SecretTokenKey)).To(Equal(digest))
		Eventually(func() int { return tokens.foundIn(string(secret.Data[v1alpha1.SecretTokenKey])) }).Should(Equal(1))
	})
})

func newApp(ns, name string) *v1alpha1.PrivateApp {
	return &v1alpha1.PrivateApp{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.PrivateAppSpec{
			DisplayName: "App " + name,
			Scopes:      []string{"crm.objects.contacts.write", "crm.objects.contacts.read"},
		},
	}
}

// newUnmanagedApp creates an app the manager does not see yet, with the
// finalizer the manager would have added.
func newUnmanagedApp(ns, name string) *v1alpha1.PrivateApp {
	app := newApp(ns, name)
	app.Labels = map[string]string{unmanagedLabel: "true"}
	app.Finalizers = []string{Finalizer}
	Expect(k8s.Create(ctx, app)).To(Succeed())
	return app
}

func createTokenSecret(app *v1alpha1.PrivateApp, tok token.Token, issued time.Time) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: app.Namespace, Name: app.TokenSecretName(),
			Annotations: map[string]string{IssuedAtAnnotation: issued.Format(time.RFC3339Nano)},
		},
		Data: map[string][]byte{v1alpha1.SecretTokenKey: []byte(tok.Reveal())},
	}
	secret = desiredSecret(app, secret)
	Expect(k8s.Create(ctx, secret)).To(Succeed())
}

func handOver(app *v1alpha1.PrivateApp) {
	patchApp(app.Namespace, app.Name, func(a *v1alpha1.PrivateApp) { delete(a.Labels, unmanagedLabel) })
}

func mustToken() token.Token {
	tok, err := token.New()
	Expect(err).NotTo(HaveOccurred())
	return tok
}

func getApp(ns, name string) *v1alpha1.PrivateApp {
	app := &v1alpha1.PrivateApp{}
	ExpectWithOffset(1, k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, app)).To(Succeed())
	return app
}

func getSecret(ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	ExpectWithOffset(1, k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)).To(Succeed())
	return s
}

func listApps(ns string) []v1alpha1.PrivateApp {
	var l v1alpha1.PrivateAppList
	ExpectWithOffset(1, k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
	return l.Items
}

func patchApp(ns, name string, mutate func(*v1alpha1.PrivateApp)) {
	EventuallyWithOffset(1, func() error {
		app := getApp(ns, name)
		mutate(app)
		return k8s.Update(ctx, app)
	}).Should(Succeed())
}

// digestOf returns the digest of a token in a Secret; tests compare digests,
// never token text, so that a failing assertion prints no token.
func digestOf(s *corev1.Secret, key string) string {
	tok, err := token.Parse(string(s.Data[key]))
	if err != nil {
		return "unparseable: " + err.Error()
	}
	return tok.Digest().String()
}

func waitFor(ns, name string, ok func(*v1alpha1.PrivateApp) bool) *v1alpha1.PrivateApp {
	var app *v1alpha1.PrivateApp
	EventuallyWithOffset(1, func() bool {
		app = getApp(ns, name)
		return app.Status.ObservedGeneration == app.Generation && ok(app)
	}, "10s").Should(BeTrue(), "app %s/%s never reached the expected state", ns, name)
	return app
}

func waitReady(ns, name string) *v1alpha1.PrivateApp {
	return waitFor(ns, name, isReady)
}

func waitReason(ns, name, reason string) *v1alpha1.PrivateApp {
	return waitFor(ns, name, func(a *v1alpha1.PrivateApp) bool { return readyReason(a) == reason })
}

func isReady(a *v1alpha1.PrivateApp) bool {
	return meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady)
}

func readyMessage(a *v1alpha1.PrivateApp) string {
	if c := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Message
	}
	return ""
}

func lastActivity(a *v1alpha1.PrivateApp) v1alpha1.ActivityType {
	if len(a.Status.Activity) == 0 {
		return ""
	}
	return a.Status.Activity[len(a.Status.Activity)-1].Type
}

// appEvents returns the reason and type of every Event about the app.
func appEvents(ns, name string) map[string]string {
	var evs eventsv1.EventList
	ExpectWithOffset(1, k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
	out := map[string]string{}
	for _, e := range evs.Items {
		if e.Regarding.Name == name {
			out[e.Reason] = e.Type
		}
	}
	return out
}

// expectEvent waits for an Event: the recorder sends them asynchronously.
func expectEvent(ns, name, reason, eventType string) {
	EventuallyWithOffset(1, func() map[string]string { return appEvents(ns, name) }).
		Should(HaveKeyWithValue(reason, eventType), "Event %s about %s/%s", reason, ns, name)
}

func sortByAge(apps []v1alpha1.PrivateApp) {
	sort.Slice(apps, func(i, j int) bool {
		if !apps[i].CreationTimestamp.Equal(&apps[j].CreationTimestamp) {
			return apps[i].CreationTimestamp.Before(&apps[j].CreationTimestamp)
		}
		return apps[i].Name < apps[j].Name
	})
}

func sortedNames(apps []v1alpha1.PrivateApp) []string {
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	sort.Strings(names)
	return names
}
