package controller

import (
	"context"
	"fmt"
	"mime"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
	"github.com/privateapps-dev/privateapp-operator/internal/notify/notifytest"
)

const operatorNamespace = "privateapp-system"

var (
	mailServer *notifytest.SMTPServer
	receiver   *notifytest.Receiver
	// stopNotifier stops the manager that runs the AppNotification
	// controller and waits until it has stopped; tests restart it.
	stopNotifier func()
)

// startNotificationInfra starts a real SMTP server (STARTTLS, AUTH PLAIN), a
// webhook receiver that verifies signatures, the cluster-wide directory, and
// the AppNotification controller in a manager of its own.
func startNotificationInfra() {
	var err error
	mailServer, err = notifytest.StartSMTP(notifytest.SMTPOptions{StartTLS: true, Username: "operator", Password: "mail-password"})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(mailServer.Close)
	receiver = notifytest.StartReceiver([]byte("webhook-signing-key-0123456789"))
	DeferCleanup(receiver.Close)

	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}})).To(Succeed())
	Expect(k8s.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: notify.DefaultDirectoryName},
		Data: map[string]string{notify.DirectoryKey: `
superAdmins: [alice]
users:
  alice: alice@example.com
  bob: bob@example.com
  carol: carol@example.com
teams:
  security: [carol]
`},
	})).To(Succeed())
	stopNotifier = startNotifier()
}

func notifierChannels() *notify.Channels {
	return &notify.Channels{
		Mailer: &notify.Mailer{Address: mailServer.Addr, From: "Private apps <privateapps@example.com>", TLS: notify.StartTLS,
			Username: "operator", Password: "mail-password", RootCAs: mailServer.CertPool, Timeout: 5 * time.Second},
		Webhook:            &notify.Webhook{URL: receiver.URL, Secret: receiver.Secret},
		DirectoryNamespace: operatorNamespace,
		DirectoryName:      notify.DefaultDirectoryName,
	}
}

func startNotifier() func() { return startNotifierWith(notifierChannels()) }

// startNotifierWith runs the AppNotification controller with channels
// (nil: nothing configured).
func startNotifierWith(channels *notify.Channels) func() {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      testCacheOptions(),
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	Expect((&AppNotificationReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("privateapp-operator"),
		Clock:     fakeClock,
		Channels:  channels,
		NewQueue:  newFakeClockQueue,
	}).SetupWithManager(mgr)).To(Succeed())
	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	return func() {
		mcancel()
		Eventually(done, 30*time.Second).Should(BeClosed())
	}
}

var _ = Describe("AppNotification", func() {
	var ns string

	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "notif-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
		// A notification left behind would keep reminding as later specs
		// step the clock by days.
		DeferCleanup(func() {
			Expect(k8s.DeleteAllOf(ctx, &v1alpha1.AppNotification{}, client.InNamespace(ns))).To(Succeed())
		})
	})

	It("tells everyone once when an app is installed, by mail and signed webhook", func() {
		before := newApp(ns, "old-app")
		Expect(k8s.Create(ctx, before)).To(Succeed())
		waitReady(ns, "old-app")
		fakeClock.Step(time.Second)

		createNotification(ns, "installs", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppInstalled, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsEveryone},
		})
		waitActive(ns, "installs")
		app := newApp(ns, "billing-sync")
		app.Annotations = map[string]string{v1alpha1.InstalledByAnnotation: "dave@example.com"}
		Expect(k8s.Create(ctx, app)).To(Succeed())
		waitReady(ns, "billing-sync")

		Eventually(func() []string { return mailTo(ns) }).Should(Equal([]string{"alice@example.com", "bob@example.com", "carol@example.com"}))
		for _, m := range mails(ns) {
			Expect(subject(m)).To(Equal(fmt.Sprintf("[privateapps] App billing-sync in namespace %s was installed", ns)))
			Expect(m.TLS).To(BeTrue())
		}
		Eventually(func() int { return len(payloads(ns)) }).Should(Equal(1))
		p := payloads(ns)[0]
		Expect(p.Event).To(Equal(notify.AppInstalled))
		Expect(p.App.Name).To(Equal("billing-sync"))
		Expect(p.App.InstalledBy).To(Equal("dave@example.com"))
		Expect(p.Recipients).To(HaveLen(3))

		n := waitDelivered(ns, "installs", 1)
		d := n.Status.Deliveries[0]
		Expect(d.ID).To(Equal(p.ID))
		Expect(d.SentTo).To(ConsistOf("alice", "bob", "carol", v1alpha1.WebhookRecipient))
		Expect(d.Attempts).To(Equal(int32(1)))
		Expect(notificationReady(n)).To(Equal(v1alpha1.ReasonDelivering))
		expectEvent(ns, "installs", EventDelivered, corev1.EventTypeNormal)

		By("resyncs, edits and a manager restart send nothing again; the app installed before is never told")
		patchApp(ns, "billing-sync", func(a *v1alpha1.PrivateApp) { a.Spec.Description = "edited" })
		stopNotifier()
		stopNotifier = startNotifier()
		patchNotification(ns, "installs", func(n *v1alpha1.AppNotification) { n.Labels = map[string]string{"touched": "yes"} })
		Consistently(func() int { return len(mails(ns)) }, 2*time.Second).Should(Equal(3))
		Expect(payloads(ns)).To(HaveLen(1))
		Expect(getNotification(ns, "installs").Status.Apps).To(ContainElements(
			HaveField("Name", "old-app"), HaveField("Name", "billing-sync")))
	})

	It("reports a disconnect, then reminds hourly with no repeats or gaps across a restart", func() {
		Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
		waitReady(ns, "crm")
		createNotification(ns, "crm-down", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppDisconnected, Apps: []string{"crm"}, Reminder: v1alpha1.ReminderHourly,
			Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSpecific, Users: []string{"bob"}, Teams: []string{"security"}},
		})
		waitActive(ns, "crm-down")

		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })
		waitFor(ns, "crm", func(a *v1alpha1.PrivateApp) bool { return a.Status.Connection == v1alpha1.ConnectionDisconnected })
		Eventually(func() []string { return subjects(ns) }).Should(Equal([]string{
			"bob: was disconnected", "carol: was disconnected",
		}))

		fakeClock.Step(time.Hour)
		Eventually(func() []string { return subjects(ns) }).Should(HaveLen(4))
		Eventually(func() []int { return reminders(ns) }).Should(Equal([]int{0, 1}))

		By("a restart neither repeats reminder 1 nor skips reminder 2")
		stopNotifier()
		stopNotifier = startNotifier()
		Consistently(func() []int { return reminders(ns) }, time.Second).Should(Equal([]int{0, 1}))
		fakeClock.Step(time.Hour)
		Eventually(func() []int { return reminders(ns) }).Should(Equal([]int{0, 1, 2}))

		By("three hours at once bring reminders 3, 4 and 5")
		fakeClock.Step(3 * time.Hour)
		Eventually(func() []int { return reminders(ns) }).Should(Equal([]int{0, 1, 2, 3, 4, 5}))
		Expect(mailTo(ns)).To(HaveLen(12), "bob and carol, six notices each")

		By("a reconnect ends the episode; the next disconnect is a new one")
		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = false })
		waitReady(ns, "crm")
		Eventually(func() *metav1.Time { return appWatch(ns, "crm-down", "crm").DisconnectedAt }).Should(BeNil())
		fakeClock.Step(2 * time.Hour)
		Consistently(func() []int { return reminders(ns) }, time.Second).Should(HaveLen(6))
		patchApp(ns, "crm", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })
		Eventually(func() []int { return reminders(ns) }).Should(Equal([]int{0, 1, 2, 3, 4, 5, 0}))
		Expect(payloads(ns)).To(HaveLen(7))
	})

	DescribeTable("reminds on time for each frequency",
		func(freq v1alpha1.ReminderFrequency, first func(time.Time) time.Time) {
			Expect(k8s.Create(ctx, newApp(ns, "sync"))).To(Succeed())
			waitReady(ns, "sync")
			createNotification(ns, "sync-down", v1alpha1.AppNotificationSpec{
				Event: v1alpha1.EventAppDisconnected, Apps: []string{"sync"}, Reminder: freq,
				Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSuperAdmins},
			})
			waitActive(ns, "sync-down")
			patchApp(ns, "sync", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })
			since := waitFor(ns, "sync", func(a *v1alpha1.PrivateApp) bool { return a.Status.DisconnectedAt != nil }).Status.DisconnectedAt.Time
			Eventually(func() []int { return reminders(ns) }).Should(Equal([]int{0}))

			due := first(since)
			fakeClock.SetTime(due.Add(-time.Second))
			Consistently(func() []int { return reminders(ns) }, time.Second).Should(Equal([]int{0}))
			fakeClock.SetTime(due)
			Eventually(func() []int { return reminders(ns) }).Should(Equal([]int{0, 1}))
			Expect(mailTo(ns)).To(Equal([]string{"alice@example.com", "alice@example.com"}))
			n := getNotification(ns, "sync-down")
			Expect(n.Status.Deliveries[1].Time.Time).To(BeTemporally("==", due))
		},
		Entry("Daily", v1alpha1.ReminderDaily, func(t time.Time) time.Time { return t.Add(24 * time.Hour) }),
		Entry("Weekly", v1alpha1.ReminderWeekly, func(t time.Time) time.Time { return t.Add(7 * 24 * time.Hour) }),
		Entry("Monthly", v1alpha1.ReminderMonthly, func(t time.Time) time.Time { return notify.ReminderDue(t, notify.Monthly, 1) }),
	)

	It("holds a deleted app until its uninstall is recorded, even while the notifier is down", func() {
		Expect(k8s.Create(ctx, newApp(ns, "legacy"))).To(Succeed())
		waitReady(ns, "legacy")
		createNotification(ns, "removals", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppUninstalled, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSuperAdmins},
		})
		waitActive(ns, "removals")

		stopNotifier()
		Expect(k8s.Delete(ctx, getApp(ns, "legacy"))).To(Succeed())
		Consistently(func() int { return len(listApps(ns)) }, 2*time.Second).Should(Equal(1),
			"the finalizer waits for the notification to record the uninstall")
		Expect(getNotification(ns, "removals").Status.Deliveries).To(BeEmpty())
		Expect(mails(ns)).To(BeEmpty())

		stopNotifier = startNotifier()
		Eventually(func() int { return len(listApps(ns)) }).Should(BeZero())
		n := getNotification(ns, "removals")
		Expect(n.Status.Deliveries).To(HaveLen(1))
		Expect(n.Status.Deliveries[0].Event).To(Equal(v1alpha1.EventAppUninstalled))
		Eventually(func() []string { return subjects(ns) }).Should(Equal([]string{"alice: was uninstalled"}))
		Eventually(func() int { return len(payloads(ns)) }).Should(Equal(1))
		Expect(payloads(ns)[0].Event).To(Equal(notify.AppUninstalled))
		waitDelivered(ns, "removals", 1)
	})

	It("never holds an app's deletion, however many notices wait", func() {
		createNotification(ns, "removals", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppUninstalled, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSuperAdmins},
		})
		waitActive(ns, "removals")
		stopNotifier()
		// As full as the CRD allows: 200 uninstalls waiting for a dead
		// mail server.
		n := getNotification(ns, "removals")
		for i := range 200 {
			n.Status.Deliveries = append(n.Status.Deliveries, v1alpha1.Delivery{ID: fmt.Sprintf("backlog-%03d", i), App: fmt.Sprintf("old-%d", i),
				Event: v1alpha1.EventAppUninstalled, Time: metav1.NewTime(fakeClock.Now()), State: v1alpha1.DeliveryPending, Attempts: 3})
		}
		Expect(k8s.Status().Update(ctx, n)).To(Succeed())
		dead := notifierChannels()
		dead.Mailer.Address, dead.Webhook = "127.0.0.1:1", nil
		stopNotifier = startNotifierWith(dead)
		DeferCleanup(func() {
			stopNotifier()
			stopNotifier = startNotifier()
		})

		Expect(k8s.Create(ctx, newApp(ns, "last"))).To(Succeed())
		waitReady(ns, "last")
		Expect(k8s.Delete(ctx, getApp(ns, "last"))).To(Succeed())
		// Well within the two minutes after which a deletion goes without
		// its notice: the notice is recorded, and the oldest given up.
		Eventually(func() int { return len(listApps(ns)) }, 20*time.Second).Should(BeZero())
		n = getNotification(ns, "removals")
		Expect(len(n.Status.Deliveries)).To(BeNumerically("<=", maxPendingDeliveries+maxFinishedDeliveries))
		pending := 0
		for _, d := range n.Status.Deliveries {
			if d.State == v1alpha1.DeliveryPending {
				pending++
			}
		}
		Expect(pending).To(Equal(maxPendingDeliveries))
		last := n.Status.Deliveries[len(n.Status.Deliveries)-1]
		Expect(last.App).To(Equal("last"))
		Expect(last.State).To(Equal(v1alpha1.DeliveryPending))
		Expect(n.Status.Deliveries[0].State).To(Equal(v1alpha1.DeliveryFailed))
		Expect(n.Status.Deliveries[0].Message).To(ContainSubstring("more than 100 notifications were waiting"))
	})

	It("keeps nothing waiting when no channel is configured", func() {
		stopNotifier()
		stopNotifier = startNotifierWith(nil)
		DeferCleanup(func() {
			stopNotifier()
			stopNotifier = startNotifier()
		})
		createNotification(ns, "installs", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppInstalled, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSuperAdmins},
		})
		waitActive(ns, "installs")
		Expect(k8s.Create(ctx, newApp(ns, "crm"))).To(Succeed())
		waitReady(ns, "crm")
		Eventually(func() []v1alpha1.Delivery { return getNotification(ns, "installs").Status.Deliveries }).Should(ConsistOf(
			And(HaveField("App", "crm"), HaveField("State", v1alpha1.DeliveryFailed),
				HaveField("Message", ContainSubstring("no SMTP server, webhook or chat configured")))))
		Expect(meta.FindStatusCondition(getNotification(ns, "installs").Status.Conditions, v1alpha1.ConditionReady)).To(
			HaveField("Reason", v1alpha1.ReasonNotConfigured))
		Expect(mails(ns)).To(BeEmpty())
	})

	It("posts to chat webhooks in their own formats, once each, retrying one that failed", func() {
		slack, teams := notifytest.StartChatReceiver(notify.ChatSlack), notifytest.StartChatReceiver(notify.ChatTeams)
		DeferCleanup(slack.Close)
		DeferCleanup(teams.Close)
		channels := notifierChannels()
		channels.Chats = []*notify.Chat{
			{Name: "slack", Format: notify.ChatSlack, URL: slack.WebhookURL()},
			{Name: "teams", Format: notify.ChatTeams, URL: teams.WebhookURL()},
		}
		stopNotifier()
		stopNotifier = startNotifierWith(channels)
		DeferCleanup(func() {
			stopNotifier()
			stopNotifier = startNotifier()
		})
		Expect(k8s.Create(ctx, newApp(ns, "chatty"))).To(Succeed())
		waitReady(ns, "chatty")
		createNotification(ns, "chatty-down", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppDisconnected, Apps: []string{"chatty"},
			Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSpecific, Users: []string{"bob"}},
		})
		waitActive(ns, "chatty-down")

		teams.FailNext(1)
		patchApp(ns, "chatty", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })
		Eventually(func() string { return notificationReady(getNotification(ns, "chatty-down")) }).Should(Equal(v1alpha1.ReasonDeliveryFailing))
		d := getNotification(ns, "chatty-down").Status.Deliveries[0]
		Expect(d.SentTo).To(ConsistOf("bob", v1alpha1.WebhookRecipient, "chat:slack"))
		Expect(d.Message).To(ContainSubstring("chat teams"))
		Expect(d.Message).To(ContainSubstring("503"))
		Expect(d.Message).NotTo(ContainSubstring(notifytest.SecretPath))

		fakeClock.Step(30 * time.Second)
		n := waitDelivered(ns, "chatty-down", 1)
		Expect(n.Status.Deliveries[0].SentTo).To(ConsistOf("bob", v1alpha1.WebhookRecipient, "chat:slack", "chat:teams"))
		Expect(slack.Texts()).To(HaveLen(1), "slack was served on the first attempt and not again")
		Expect(teams.Texts()).To(HaveLen(1))
		Expect(slack.Texts()[0]).To(ContainSubstring("App chatty in namespace " + ns + " was disconnected"))
		Expect(slack.Texts()[0]).To(ContainSubstring("patch privateapp chatty"))
		Expect(teams.Texts()[0]).To(ContainSubstring("Namespace: " + ns))
		Expect(slack.Refused()).To(BeEmpty())
		Expect(teams.Refused()).To(BeEmpty())
	})

	It("retries only the recipients that failed, with backoff, and says so", func() {
		Expect(k8s.Create(ctx, newApp(ns, "etl"))).To(Succeed())
		waitReady(ns, "etl")
		createNotification(ns, "etl-down", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppDisconnected, Apps: []string{"etl"},
			Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSpecific, Users: []string{"bob"}},
		})
		waitActive(ns, "etl-down")

		receiver.FailNext(1)
		patchApp(ns, "etl", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })
		Eventually(func() string { return notificationReady(getNotification(ns, "etl-down")) }).Should(Equal(v1alpha1.ReasonDeliveryFailing))
		n := getNotification(ns, "etl-down")
		d := n.Status.Deliveries[0]
		Expect(d.State).To(Equal(v1alpha1.DeliveryPending))
		Expect(d.SentTo).To(Equal([]string{"bob"}))
		Expect(d.Message).To(ContainSubstring("503"))
		Expect(d.NextAttemptAt.Time).To(BeTemporally("==", fakeClock.Now().Add(30*time.Second)))
		expectEvent(ns, "etl-down", EventDeliveryFailed, corev1.EventTypeWarning)
		Expect(meta.FindStatusCondition(n.Status.Conditions, v1alpha1.ConditionReady).Message).To(ContainSubstring("503"))

		fakeClock.Step(30 * time.Second)
		n = waitDelivered(ns, "etl-down", 1)
		Expect(n.Status.Deliveries[0].Attempts).To(Equal(int32(2)))
		Expect(n.Status.Deliveries[0].SentTo).To(ConsistOf("bob", v1alpha1.WebhookRecipient))
		Expect(notificationReady(n)).To(Equal(v1alpha1.ReasonDelivering))
		Expect(mailTo(ns)).To(Equal([]string{"bob@example.com"}), "bob was served on the first attempt and not again")
		Expect(payloads(ns)).To(HaveLen(1))
	})

	It("gives up after the last retry, having served everyone else once", func() {
		Expect(k8s.Create(ctx, newApp(ns, "feed"))).To(Succeed())
		waitReady(ns, "feed")
		dir := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: notify.NamespaceDirectoryName},
			Data: map[string]string{notify.DirectoryKey: "users: {erin: erin@example.com, frank: frank@bounces.example.com}\n" +
				"teams: {owners: [erin, frank]}\n"},
		}
		Expect(k8s.Create(ctx, dir)).To(Succeed())
		mailServer.Reject("frank@bounces.example.com")
		DeferCleanup(mailServer.Reset)
		createNotification(ns, "feed-down", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppDisconnected, Apps: []string{"feed"},
			Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSpecific, Teams: []string{"owners"}},
		})
		waitActive(ns, "feed-down")
		patchApp(ns, "feed", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })

		attempts := func() int32 {
			if d := getNotification(ns, "feed-down").Status.Deliveries; len(d) > 0 {
				return d[0].Attempts
			}
			return 0
		}
		for attempt := 1; attempt < maxDeliveryAttempts; attempt++ {
			Eventually(attempts).Should(Equal(int32(attempt)))
			fakeClock.Step(retryDelay(int32(attempt)))
		}
		Eventually(func() v1alpha1.DeliveryState { return getNotification(ns, "feed-down").Status.Deliveries[0].State }).
			Should(Equal(v1alpha1.DeliveryFailed))
		d := getNotification(ns, "feed-down").Status.Deliveries[0]
		Expect(d.Attempts).To(Equal(int32(maxDeliveryAttempts)))
		Expect(d.SentTo).To(ConsistOf("erin", v1alpha1.WebhookRecipient))
		Expect(d.Message).To(ContainSubstring("frank: smtp RCPT TO frank@bounces.example.com: 550"))
		Expect(mailTo(ns)).To(Equal([]string{"erin@example.com"}), "the namespace's own directory is used")
		Expect(notificationReady(getNotification(ns, "feed-down"))).To(Equal(v1alpha1.ReasonDeliveryFailing))
	})

	It("names unknown users and teams and still serves the others", func() {
		Expect(k8s.Create(ctx, newApp(ns, "hr"))).To(Succeed())
		waitReady(ns, "hr")
		createNotification(ns, "hr-down", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppDisconnected, Apps: []string{"hr"},
			Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSpecific, Users: []string{"alice", "zed"}, Teams: []string{"ghosts"}},
		})
		Eventually(func() string { return notificationReady(getNotification(ns, "hr-down")) }).Should(Equal(v1alpha1.ReasonUnknownRecipients))
		c := meta.FindStatusCondition(getNotification(ns, "hr-down").Status.Conditions, v1alpha1.ConditionReady)
		Expect(c.Message).To(ContainSubstring("users zed; teams ghosts"))
		Expect(c.Message).To(ContainSubstring("ConfigMap privateapp-system/privateapp-operator-directory"))

		patchApp(ns, "hr", func(a *v1alpha1.PrivateApp) { a.Spec.Suspend = true })
		Eventually(func() []string { return mailTo(ns) }).Should(Equal([]string{"alice@example.com"}))
		Expect(waitDelivered(ns, "hr-down", 1).Status.Deliveries[0].SentTo).To(ConsistOf("alice", v1alpha1.WebhookRecipient))
	})

	It("reports a directory it cannot read, with what is wrong", func() {
		Expect(k8s.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: notify.NamespaceDirectoryName},
			Data:       map[string]string{notify.DirectoryKey: "users: {erin: erin-at-example}\n"},
		})).To(Succeed())
		createNotification(ns, "all", v1alpha1.AppNotificationSpec{
			Event: v1alpha1.EventAppInstalled, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsEveryone},
		})
		Eventually(func() string { return notificationReady(getNotification(ns, "all")) }).Should(Equal(v1alpha1.ReasonDirectoryInvalid))
		Expect(meta.FindStatusCondition(getNotification(ns, "all").Status.Conditions, v1alpha1.ConditionReady).Message).To(
			ContainSubstring(`users.erin: "erin-at-example" is not a plain email address`))
	})
})

func createNotification(ns, name string, spec v1alpha1.AppNotificationSpec) {
	ExpectWithOffset(1, k8s.Create(ctx, &v1alpha1.AppNotification{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec,
	})).To(Succeed())
}

func getNotification(ns, name string) *v1alpha1.AppNotification {
	n := &v1alpha1.AppNotification{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, n)).To(Succeed())
	return n
}

func patchNotification(ns, name string, mutate func(*v1alpha1.AppNotification)) {
	n := getNotification(ns, name)
	base := n.DeepCopy()
	mutate(n)
	ExpectWithOffset(1, k8s.Patch(ctx, n, client.MergeFrom(base))).To(Succeed())
}

// waitActive waits until the controller watches for the notification: app
// events before that are not reported.
func waitActive(ns, name string) {
	EventuallyWithOffset(1, func() *metav1.Time { return getNotification(ns, name).Status.ActiveSince }).ShouldNot(BeNil())
}

func waitDelivered(ns, name string, count int) *v1alpha1.AppNotification {
	var n *v1alpha1.AppNotification
	EventuallyWithOffset(1, func() int {
		n = getNotification(ns, name)
		sent := 0
		for _, d := range n.Status.Deliveries {
			if d.State == v1alpha1.DeliverySent {
				sent++
			}
		}
		return sent
	}).Should(Equal(count))
	return n
}

func notificationReady(n *v1alpha1.AppNotification) string {
	if c := meta.FindStatusCondition(n.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

func appWatch(ns, notification, app string) v1alpha1.NotifiedApp {
	for _, w := range getNotification(ns, notification).Status.Apps {
		if w.Name == app {
			return w
		}
	}
	return v1alpha1.NotifiedApp{}
}

// mails are the messages the SMTP server accepted about apps in ns.
func mails(ns string) []notifytest.Message {
	var out []notifytest.Message
	for _, m := range mailServer.Messages() {
		if strings.Contains(subject(m), " in namespace "+ns+" ") {
			out = append(out, m)
		}
	}
	return out
}

func subject(m notifytest.Message) string {
	s, err := new(mime.WordDecoder).DecodeHeader(m.Header("Subject"))
	Expect(err).NotTo(HaveOccurred())
	return s
}

// mailTo lists the envelope recipient of each mail about ns, sorted.
func mailTo(ns string) []string {
	out := notifytest.Recipients(mails(ns))
	sort.Strings(out)
	return out
}

// subjects lists "<user>: <what happened>" for each mail about ns, sorted.
func subjects(ns string) []string {
	var out []string
	for _, m := range mails(ns) {
		user, _, _ := strings.Cut(m.To[0], "@")
		_, what, _ := strings.Cut(subject(m), " in namespace "+ns+" ")
		out = append(out, user+": "+what)
	}
	sort.Strings(out)
	return out
}

// payloads are the verified webhook deliveries about apps in ns.
func payloads(ns string) []notify.Payload {
	var out []notify.Payload
	for _, p := range receiver.Payloads() {
		if p.App.Namespace == ns {
			out = append(out, p)
		}
	}
	return out
}

// reminders lists the reminder number of each webhook delivery about ns,
// in the order they arrived.
func reminders(ns string) []int {
	var out []int
	for _, p := range payloads(ns) {
		out = append(out, p.Reminder)
	}
	return out
}
