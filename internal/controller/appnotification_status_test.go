package controller

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
)

func TestSetNotificationReady(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	people := resolution{Resolution: notify.Resolution{Recipients: []notify.Recipient{{User: "alice", Email: "alice@example.com"}}},
		source: "ConfigMap ops/dir"}
	failing := v1alpha1.Delivery{ID: "abc", App: "crm", Event: v1alpha1.EventAppInstalled, State: v1alpha1.DeliveryPending,
		Attempts: 2, Message: "Attempt 2 failed: alice: smtp: cannot connect"}
	sent := v1alpha1.Delivery{ID: "def", State: v1alpha1.DeliverySent, Attempts: 1}
	tests := []struct {
		name       string
		configured bool
		dirErr     error
		res        resolution
		kind       v1alpha1.RecipientKind
		deliveries []v1alpha1.Delivery
		reason     string
		message    string
	}{
		{name: "nothing configured", configured: false, res: people, reason: v1alpha1.ReasonNotConfigured, message: "--notifications-config"},
		{name: "bad directory", configured: true, dirErr: errors.New("ConfigMap ops/dir has no key"), reason: v1alpha1.ReasonDirectoryInvalid, message: "has no key"},
		{name: "unknown names", configured: true, kind: v1alpha1.RecipientsSpecific,
			res:    resolution{Resolution: notify.Resolution{UnknownUsers: []string{"zed"}}, source: "ConfigMap ops/dir"},
			reason: v1alpha1.ReasonUnknownRecipients, message: "Not in the directory (ConfigMap ops/dir): users zed"},
		{name: "nobody", configured: true, kind: v1alpha1.RecipientsSuperAdmins, res: resolution{source: "ConfigMap ops/dir"},
			reason: v1alpha1.ReasonNoRecipients, message: "Recipients SuperAdmins resolve to nobody"},
		{name: "latest attempt failed", configured: true, res: people, deliveries: []v1alpha1.Delivery{sent, failing},
			reason: v1alpha1.ReasonDeliveryFailing, message: "Delivery abc (AppInstalled of app crm) is pending: Attempt 2 failed"},
		{name: "all good", configured: true, res: people, deliveries: []v1alpha1.Delivery{failing, sent},
			reason: v1alpha1.ReasonDelivering, message: "Recipients resolve to alice (ConfigMap ops/dir)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := tt.kind
			if kind == "" {
				kind = v1alpha1.RecipientsEveryone
			}
			n := &v1alpha1.AppNotification{ObjectMeta: metav1.ObjectMeta{Generation: 3},
				Spec:   v1alpha1.AppNotificationSpec{Recipients: v1alpha1.Recipients{Kind: kind}},
				Status: v1alpha1.AppNotificationStatus{Deliveries: tt.deliveries}}
			setNotificationReady(n, now, tt.configured, tt.dirErr, tt.res)
			c := meta.FindStatusCondition(n.Status.Conditions, v1alpha1.ConditionReady)
			if c == nil || c.Reason != tt.reason || !strings.Contains(c.Message, tt.message) || c.ObservedGeneration != 3 {
				t.Fatalf("Ready = %+v, want reason %s and a message containing %q", c, tt.reason, tt.message)
			}
			if want := tt.reason == v1alpha1.ReasonDelivering; (c.Status == metav1.ConditionTrue) != want {
				t.Fatalf("Ready status %s for reason %s", c.Status, c.Reason)
			}
		})
	}
}

func TestTrimDeliveriesKeepsPending(t *testing.T) {
	n := &v1alpha1.AppNotification{}
	for i := range 70 {
		state := v1alpha1.DeliverySent
		if i%10 == 0 {
			state = v1alpha1.DeliveryPending
		}
		n.Status.Deliveries = append(n.Status.Deliveries, v1alpha1.Delivery{ID: string(rune('A' + i)), State: state})
	}
	trimDeliveries(n)
	pending, finished := 0, 0
	for _, d := range n.Status.Deliveries {
		if d.State == v1alpha1.DeliveryPending {
			pending++
		} else {
			finished++
		}
	}
	if pending != 7 || finished != maxFinishedDeliveries {
		t.Fatalf("after trimming: %d pending, %d finished; want 7 and %d", pending, finished, maxFinishedDeliveries)
	}
	if last := n.Status.Deliveries[len(n.Status.Deliveries)-1].ID; last != string(rune('A'+69)) {
		t.Fatalf("the newest delivery was dropped; last is %q", last)
	}
}

// TestDeliveriesStayBounded: however many notices are recorded while
// nothing can send them, status stays within the CRD's limit, the newest
// wait, and the oldest are given up with a reason.
func TestDeliveriesStayBounded(t *testing.T) {
	n := &v1alpha1.AppNotification{ObjectMeta: metav1.ObjectMeta{UID: "n1"}}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := range 500 {
		if !addDelivery(n, v1alpha1.Delivery{App: fmt.Sprintf("app-%d", i), AppUID: fmt.Sprintf("uid-%d", i),
			Event: v1alpha1.EventAppUninstalled, Time: metav1.NewTime(t0.Add(time.Duration(i) * time.Minute))}) {
			t.Fatalf("delivery %d not added", i)
		}
		if len(n.Status.Deliveries) > maxPendingDeliveries+maxFinishedDeliveries {
			t.Fatalf("after %d deliveries status holds %d", i+1, len(n.Status.Deliveries))
		}
	}
	pending := 0
	for _, d := range n.Status.Deliveries {
		switch d.State {
		case v1alpha1.DeliveryPending:
			pending++
		case v1alpha1.DeliveryFailed:
			if !strings.Contains(d.Message, "oldest are given up") {
				t.Errorf("%s given up with %q", d.App, d.Message)
			}
		}
	}
	first, last := n.Status.Deliveries[0], n.Status.Deliveries[len(n.Status.Deliveries)-1]
	if pending != maxPendingDeliveries || last.App != "app-499" || last.State != v1alpha1.DeliveryPending ||
		first.App != "app-350" || first.State != v1alpha1.DeliveryFailed {
		t.Fatalf("%d pending, first %s %s, last %s %s; want %d pending, app-350 failed first, app-499 pending last",
			pending, first.App, first.State, last.App, last.State, maxPendingDeliveries)
	}
}

func TestRetryDelay(t *testing.T) {
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
		16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	for i, w := range want {
		if got := retryDelay(int32(i + 1)); got != w {
			t.Errorf("retryDelay(%d) = %s, want %s", i+1, got, w)
		}
	}
}
