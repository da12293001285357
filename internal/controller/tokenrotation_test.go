package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

var _ = Describe("TokenRotation", func() {
	var ns string
	var oldDigest string

	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rot-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
		Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
		oldDigest = waitReady(ns, "crm").Status.Token.Digest
	})

	It("Immediate: the Secret holds a new token and the old one is revoked in the same write", func() {
		createRotation(ns, "leak", v1alpha1.RotationImmediate, nil)
		rot := waitPhase(ns, "leak", v1alpha1.RotationCompleted)
		Expect(rot.Status.RotatedAt).NotTo(BeNil())
		Expect(rot.Status.CompletedAt).NotTo(BeNil())
		Expect(rotationReady(rot)).To(Equal(v1alpha1.ReasonCompleted))

		app := getApp(ns, "crm")
		Expect(app.Status.Token.Digest).NotTo(Equal(oldDigest))
		Expect(app.Status.Token.Previous).To(BeNil())
		Expect(app.Status.Token.Rotation).To(Equal("leak"))
		Expect(validDigests(app)).NotTo(ContainElement(oldDigest))
		secret := getSecret(ns, "crm-token")
		Expect(digestOf(secret, v1alpha1.SecretTokenKey)).To(Equal(app.Status.Token.Digest))
		Expect(secret.Data).NotTo(HaveKey(v1alpha1.SecretPreviousTokenKey))
		Expect(lastActivity(app)).To(Equal(v1alpha1.ActivityTokenRotated))
		Expect(isReady(app)).To(BeTrue())
	})

	It("Delayed: both tokens work for seven days, then the old one goes, exactly on time", func() {
		createRotation(ns, "six-monthly", v1alpha1.RotationDelayed, nil)
		rot := waitPhase(ns, "six-monthly", v1alpha1.RotationGracePeriod)
		expiry := rot.Status.OldTokenExpiresAt.Time
		Expect(expiry).To(BeTemporally("==", rot.Status.RotatedAt.Add(DefaultGracePeriod)))
		Expect(rotationReady(rot)).To(Equal(v1alpha1.ReasonGracePeriod))
		Expect(meta.IsStatusConditionTrue(rot.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "a grace period is healthy")

		app := getApp(ns, "crm")
		Expect(app.Status.Token.Previous.Digest).To(Equal(oldDigest))
		Expect(app.Status.Token.Previous.ExpiresAt.Time).To(BeTemporally("==", expiry))
		Expect(app.Status.Token.Previous.Rotation).To(Equal("six-monthly"))
		secret := getSecret(ns, "crm-token")
		Expect(digestOf(secret, v1alpha1.SecretTokenKey)).To(Equal(app.Status.Token.Digest))
		Expect(digestOf(secret, v1alpha1.SecretPreviousTokenKey)).To(Equal(oldDigest))

		By("one tick before the end, the old token is still valid")
		fakeClock.SetTime(expiry.Add(-time.Nanosecond))
		Consistently(func() []string { return validDigests(getApp(ns, "crm")) }, "1s").Should(ContainElement(oldDigest))
		Expect(getRotation(ns, "six-monthly").Status.Phase).To(Equal(v1alpha1.RotationGracePeriod))

		By("at the end, it is gone from status and the Secret")
		fakeClock.SetTime(expiry)
		waitPhase(ns, "six-monthly", v1alpha1.RotationCompleted)
		app = getApp(ns, "crm")
		Expect(validDigests(app)).To(Equal([]string{app.Status.Token.Digest}))
		Expect(lastActivity(app)).To(Equal(v1alpha1.ActivityOldTokenExpired))
		Eventually(func() map[string][]byte { return getSecret(ns, "crm-token").Data }).ShouldNot(HaveKey(v1alpha1.SecretPreviousTokenKey))
	})

	It("Delayed with its own gracePeriod", func() {
		createRotation(ns, "quick", v1alpha1.RotationDelayed, &metav1.Duration{Duration: time.Hour})
		rot := waitPhase(ns, "quick", v1alpha1.RotationGracePeriod)
		Expect(rot.Status.OldTokenExpiresAt.Time).To(BeTemporally("==", rot.Status.RotatedAt.Add(time.Hour)))
	})

	It("expireOldTokenNow ends the grace period at once", func() {
		createRotation(ns, "r", v1alpha1.RotationDelayed, nil)
		waitPhase(ns, "r", v1alpha1.RotationGracePeriod)
		newDigest := getApp(ns, "crm").Status.Token.Digest
		patchRotation(ns, "r", `{"spec":{"expireOldTokenNow":true}}`)

		waitPhase(ns, "r", v1alpha1.RotationCompleted)
		app := getApp(ns, "crm")
		Expect(validDigests(app)).To(Equal([]string{newDigest}))
		Eventually(func() map[string][]byte { return getSecret(ns, "crm-token").Data }).ShouldNot(HaveKey(v1alpha1.SecretPreviousTokenKey))
	})

	It("cancel puts the old token back and revokes the new one", func() {
		createRotation(ns, "r", v1alpha1.RotationDelayed, nil)
		waitPhase(ns, "r", v1alpha1.RotationGracePeriod)
		newDigest := getApp(ns, "crm").Status.Token.Digest
		patchRotation(ns, "r", `{"spec":{"cancel":true}}`)

		rot := waitPhase(ns, "r", v1alpha1.RotationCancelled)
		Expect(rotationReady(rot)).To(Equal(v1alpha1.ReasonCancelled))
		app := getApp(ns, "crm")
		Expect(validDigests(app)).To(Equal([]string{oldDigest}))
		Expect(validDigests(app)).NotTo(ContainElement(newDigest))
		secret := getSecret(ns, "crm-token")
		Expect(digestOf(secret, v1alpha1.SecretTokenKey)).To(Equal(oldDigest))
		Expect(secret.Data).NotTo(HaveKey(v1alpha1.SecretPreviousTokenKey))
		Expect(lastActivity(app)).To(Equal(v1alpha1.ActivityRotationCancelled))
	})

	It("Immediate during a grace period supersedes it and revokes every earlier token", func() {
		createRotation(ns, "planned", v1alpha1.RotationDelayed, nil)
		waitPhase(ns, "planned", v1alpha1.RotationGracePeriod)
		graceDigest := getApp(ns, "crm").Status.Token.Digest
		createRotation(ns, "leak", v1alpha1.RotationImmediate, nil)

		waitPhase(ns, "leak", v1alpha1.RotationCompleted)
		planned := waitPhase(ns, "planned", v1alpha1.RotationSuperseded)
		Expect(rotationMessage(planned)).To(ContainSubstring(`"leak"`))
		app := getApp(ns, "crm")
		Expect(validDigests(app)).To(HaveLen(1))
		Expect(validDigests(app)).NotTo(ContainElements(oldDigest, graceDigest))
		Expect(getSecret(ns, "crm-token").Data).NotTo(HaveKey(v1alpha1.SecretPreviousTokenKey))
	})

	It("refuses a second Delayed rotation during a grace period, naming the one that holds it", func() {
		createRotation(ns, "first", v1alpha1.RotationDelayed, nil)
		waitPhase(ns, "first", v1alpha1.RotationGracePeriod)
		before := getApp(ns, "crm").Status.Token
		createRotation(ns, "second", v1alpha1.RotationDelayed, nil)

		rot := waitPhase(ns, "second", v1alpha1.RotationFailed)
		Expect(rotationReady(rot)).To(Equal(v1alpha1.ReasonRotationInProgress))
		Expect(rotationMessage(rot)).To(And(ContainSubstring(`TokenRotation "first"`),
			ContainSubstring("expireOldTokenNow: true"), ContainSubstring("cancel: true")))
		after := getApp(ns, "crm").Status.Token
		Expect(after.Digest).To(Equal(before.Digest))
		Expect(after.Previous.Digest).To(Equal(before.Previous.Digest))
	})

	It("waits as Pending for an app that does not exist yet, then runs", func() {
		createRotation(ns, "early", v1alpha1.RotationDelayed, nil, "billing")
		rot := waitPhase(ns, "early", v1alpha1.RotationPending)
		Expect(rotationReady(rot)).To(Equal(v1alpha1.ReasonAppNotFound))
		Expect(rotationMessage(rot)).To(ContainSubstring(`PrivateApp "billing" does not exist`))

		Expect(k8s.Create(ctx, newApp(ns, "billing"))).To(Succeed())
		waitPhase(ns, "early", v1alpha1.RotationGracePeriod)
		app := getApp(ns, "billing")
		Expect(app.Status.Token.Rotation).To(Equal("early"))
		Expect(app.Status.Token.Previous).NotTo(BeNil())
	})

	It("rotates a suspended app", func() {
		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })
		waitReason(ns, "crm", v1alpha1.ReasonSuspended)
		createRotation(ns, "r", v1alpha1.RotationImmediate, nil)
		waitPhase(ns, "r", v1alpha1.RotationCompleted)
		app := getApp(ns, "crm")
		Expect(app.Status.Token.Digest).NotTo(Equal(oldDigest))
		Expect(app.Status.Connection).To(Equal(v1alpha1.ConnectionDisconnected))
	})

	It("gives an expired app a new token without reviving the old one", func() {
		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) { a.Spec.TokenLifetime = &metav1.Duration{Duration: time.Minute} })
		fakeClock.Step(time.Minute)
		waitReason(ns, "crm", v1alpha1.ReasonTokenExpired)
		createRotation(ns, "renew", v1alpha1.RotationDelayed, nil)

		waitPhase(ns, "renew", v1alpha1.RotationCompleted)
		app := waitReady(ns, "crm")
		Expect(app.Status.Token.Previous).To(BeNil(), "an expired token gets no grace period")
		Expect(app.Status.Token.ExpiresAt.Time).To(BeTemporally("==", app.Status.Token.IssuedAt.Add(time.Minute)))
	})

	It("rotates on spec.rotation.interval and keeps a bounded history", func() {
		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) {
			a.Spec.Rotation = &v1alpha1.RotationPolicy{
				Interval: metav1.Duration{Duration: 24 * time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Hour},
			}
		})
		for cycle := 1; cycle <= maxAutomaticRotations+2; cycle++ {
			before := getApp(ns, "crm").Status.Token.Digest
			fakeClock.Step(24 * time.Hour)
			app := waitFor(ns, "crm", func(a *v1alpha1.PrivateApp) bool { return a.Status.Token.Digest != before })
			Expect(app.Status.Token.Previous.Digest).To(Equal(before))
			Expect(app.Status.Token.Previous.ExpiresAt.Time).To(BeTemporally("==", app.Status.Token.IssuedAt.Add(time.Hour)))
			rot := getRotation(ns, app.Status.Token.Rotation)
			Expect(rot.Spec.Strategy).To(Equal(v1alpha1.RotationDelayed))
			Expect(metav1.IsControlledBy(rot, app)).To(BeTrue())

			fakeClock.Step(time.Hour)
			waitPhase(ns, rot.Name, v1alpha1.RotationCompleted)
		}
		Eventually(func() int {
			var list v1alpha1.TokenRotationList
			Expect(k8s.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.AutomaticRotationLabel: "true"})).To(Succeed())
			return len(list.Items)
		}).Should(BeNumerically("<=", maxAutomaticRotations))
	})

	Context("after a crash", func() {
		// As in the PrivateApp crash tests: the state a manager killed between
		// two writes leaves is built on an app the manager cannot see, then
		// handed over.
		var app *v1alpha1.PrivateApp
		var current token.Token
		BeforeEach(func() {
			app = newUnmanagedApp(ns, "billing")
			current = mustToken()
			createTokenSecret(app, current, fakeClock.Now())
			app.Status.Token = &v1alpha1.TokenStatus{Digest: current.Digest().String(), IssuedAt: metav1.NewTime(fakeClock.Now())}
			app.Status.InstalledAt = &app.Status.Token.IssuedAt
			Expect(k8s.Status().Update(ctx, app)).To(Succeed())
		})

		It("drops a pending token the Secret never received, and runs the rotation again", func() {
			lost := mustToken()
			markPending(app, lost, "r")
			createRotation(ns, "r", v1alpha1.RotationImmediate, nil, "billing")

			handOver(app)
			waitPhase(ns, "r", v1alpha1.RotationCompleted)
			got := getApp(ns, "billing")
			Expect(got.Status.Token.Pending).To(BeNil())
			Expect(validDigests(got)).NotTo(ContainElements(lost.Digest().String(), current.Digest().String()))
			Expect(digestOf(getSecret(ns, "billing-token"), v1alpha1.SecretTokenKey)).To(Equal(got.Status.Token.Digest))
		})

		It("finishes a rotation whose token reached the Secret but not status", func() {
			written := mustToken()
			markPending(app, written, "r")
			secret := getSecret(ns, "billing-token")
			secret.Data[v1alpha1.SecretTokenKey] = []byte(written.Reveal())
			Expect(k8s.Update(ctx, secret)).To(Succeed())
			createRotation(ns, "r", v1alpha1.RotationImmediate, nil, "billing")

			handOver(app)
			waitPhase(ns, "r", v1alpha1.RotationCompleted)
			got := getApp(ns, "billing")
			Expect(got.Status.Token.Digest).To(Equal(written.Digest().String()), "the pending token is finished, not replaced")
			Expect(got.Status.Token.Previous).To(BeNil())
		})

		It("records a rotation that was applied but whose status was not written", func() {
			app.Status.Token.Rotation = "r"
			Expect(k8s.Status().Update(ctx, app)).To(Succeed())
			createRotation(ns, "r", v1alpha1.RotationImmediate, nil, "billing")

			handOver(app)
			waitPhase(ns, "r", v1alpha1.RotationCompleted)
			Expect(getApp(ns, "billing").Status.Token.Digest).To(Equal(current.Digest().String()), "not rotated a second time")
		})
	})
})

func createRotation(ns, name string, strategy v1alpha1.RotationStrategy, grace *metav1.Duration, app ...string) {
	appName := "crm"
	if len(app) > 0 {
		appName = app[0]
	}
	ExpectWithOffset(1, k8s.Create(ctx, &v1alpha1.TokenRotation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.TokenRotationSpec{AppName: appName, Strategy: strategy, GracePeriod: grace},
	})).To(Succeed())
}

func getRotation(ns, name string) *v1alpha1.TokenRotation {
	rot := &v1alpha1.TokenRotation{}
	ExpectWithOffset(1, k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, rot)).To(Succeed())
	return rot
}

func patchRotation(ns, name, patch string) {
	ExpectWithOffset(1, k8s.Patch(ctx, &v1alpha1.TokenRotation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
}

func waitPhase(ns, name string, phase v1alpha1.RotationPhase) *v1alpha1.TokenRotation {
	var rot *v1alpha1.TokenRotation
	EventuallyWithOffset(1, func() v1alpha1.RotationPhase {
		rot = getRotation(ns, name)
		return rot.Status.Phase
	}, "10s").Should(Equal(phase), "TokenRotation %s/%s", ns, name)
	return rot
}

func rotationReady(rot *v1alpha1.TokenRotation) string {
	if c := meta.FindStatusCondition(rot.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

func rotationMessage(rot *v1alpha1.TokenRotation) string {
	if c := meta.FindStatusCondition(rot.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Message
	}
	return ""
}

// validDigests lists the digests the token service would accept for the app
// now: the current token and a previous one whose time has not come.
func validDigests(app *v1alpha1.PrivateApp) []string {
	t := app.Status.Token
	out := []string{t.Digest}
	if t.Previous != nil && fakeClock.Now().Before(t.Previous.ExpiresAt.Time) {
		out = append(out, t.Previous.Digest)
	}
	return out
}

// markPending writes the status a manager leaves when it dies right after
// recording a pending token.
func markPending(app *v1alpha1.PrivateApp, tok token.Token, rotation string) {
	app.Status.Token.Pending = &v1alpha1.PendingTokenStatus{
		Digest: tok.Digest().String(), Rotation: rotation, At: metav1.NewTime(fakeClock.Now()),
	}
	ExpectWithOffset(1, k8s.Status().Update(ctx, app)).To(Succeed())
}
