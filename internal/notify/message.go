package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Events, as in AppNotification's spec.event.
const (
	AppInstalled    = "AppInstalled"
	AppDisconnected = "AppDisconnected"
	AppUninstalled  = "AppUninstalled"
)

// Notification is one app event to tell people about. It holds nothing
// secret: names, times and the digest-free facts of status.
type Notification struct {
	// ID is the same on every retry of the notification.
	ID string `json:"id"`
	// Event is AppInstalled, AppDisconnected or AppUninstalled.
	Event string `json:"event"`
	// Reminder is 0 for a first notice and n for the n-th reminder.
	Reminder int `json:"reminder"`
	// Time of the event (of the reminder falling due, for a reminder).
	Time time.Time `json:"time"`
	// DisconnectedSince is when a disconnect episode began.
	DisconnectedSince *time.Time `json:"disconnectedSince,omitempty"`
	// App the notification is about.
	App App `json:"app"`
	// Source is the AppNotification that asked for it.
	Source Source `json:"notification"`
}

// App is what a notification says about an app.
type App struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	UID         string `json:"uid"`
	DisplayName string `json:"displayName,omitempty"`
	InstalledBy string `json:"installedBy,omitempty"`
	// Connection is the app's state when the notification was made.
	Connection string `json:"connection,omitempty"`
}

// Source names the AppNotification object.
type Source struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// NotificationID is the stable id of one notification: the AppNotification
// (by uid), the app (by uid), the event, the episode or event time, and the
// reminder number. Recomputing it after a restart gives the same id.
func NotificationID(notificationUID, appUID, event string, at time.Time, reminder int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%s/%s/%d",
		notificationUID, appUID, event, at.UTC().Format(time.RFC3339Nano), reminder)))
	return hex.EncodeToString(sum[:16])
}

// Subject is the mail subject line.
func (n Notification) Subject() string {
	what := ""
	switch n.Event {
	case AppInstalled:
		what = "was installed"
	case AppDisconnected:
		what = "was disconnected"
		if n.Reminder > 0 {
			what = "is still disconnected"
		}
	case AppUninstalled:
		what = "was uninstalled"
	}
	return fmt.Sprintf("[privateapps] App %s in namespace %s %s", n.App.Name, n.App.Namespace, what)
}

// inert is text an app's editor wrote, made safe to set among the
// operator's own words in mails and chat: one line without control
// characters (a line of its own could pose as the operator's command), and
// no markdown link (Teams renders one; a zero-width space keeps "](" apart).
func inert(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f && r <= 0x9f {
			return '\uFFFD'
		}
		return r
	}, s)
	return strings.ReplaceAll(s, "](", "]\u200b(")
}

// Body is the plain-text mail body.
func (n Notification) Body() string {
	var b strings.Builder
	app := n.App.Name
	if n.App.DisplayName != "" {
		app = fmt.Sprintf("%s (%s)", inert(n.App.DisplayName), n.App.Name)
	}
	at := n.Time.UTC().Format(time.RFC1123)
	switch n.Event {
	case AppInstalled:
		fmt.Fprintf(&b, "The private app %s was installed in namespace %s at %s", app, n.App.Namespace, at)
		if n.App.InstalledBy != "" {
			fmt.Fprintf(&b, " by %s", n.App.InstalledBy)
		}
		b.WriteString(".\nIts access token is in a Secret in that namespace.\n")
	case AppDisconnected:
		since := n.Time
		if n.DisconnectedSince != nil {
			since = *n.DisconnectedSince
		}
		if n.Reminder > 0 {
			fmt.Fprintf(&b, "Reminder %d: the private app %s in namespace %s has been disconnected since %s.\n",
				n.Reminder, app, n.App.Namespace, since.UTC().Format(time.RFC1123))
		} else {
			fmt.Fprintf(&b, "The private app %s in namespace %s was disconnected at %s.\n",
				app, n.App.Namespace, since.UTC().Format(time.RFC1123))
		}
		if n.App.Connection == "Expired" {
			fmt.Fprintf(&b, "Its token reached spec.tokenLifetime and is refused. To issue a new one:\n\n"+
				"  kubectl -n %s create -f - <<EOF\n  apiVersion: privateapps.dev/v1alpha1\n  kind: TokenRotation\n"+
				"  metadata: {generateName: %s-}\n  spec: {appName: %s, strategy: Immediate}\n  EOF\n",
				n.App.Namespace, n.App.Name, n.App.Name)
		} else {
			fmt.Fprintf(&b, "Its tokens are refused until it is reconnected:\n\n"+
				"  kubectl -n %s patch privateapp %s --type merge -p '{\"spec\":{\"suspend\":false}}'\n",
				n.App.Namespace, n.App.Name)
		}
	case AppUninstalled:
		fmt.Fprintf(&b, "The private app %s was uninstalled from namespace %s at %s.\n"+
			"Its tokens are revoked and its Secret is removed.\n", app, n.App.Namespace, at)
	}
	fmt.Fprintf(&b, "\n--\nSent by privateapp-operator for AppNotification %s/%s (notification id %s).\n",
		n.Source.Namespace, n.Source.Name, n.ID)
	return b.String()
}
