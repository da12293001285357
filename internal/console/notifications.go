package console

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// The wizard's steps, in order.
var wizardSteps = []string{"Name", "Type", "Apps", "Recipients", "Review"}

// noteForm is the notification wizard's (and the edit page's) state; the
// wizard carries it from step to step in hidden fields.
type noteForm struct {
	Editing    bool
	Step       int
	Steps      []string
	Name       string
	Event      string
	Reminder   string
	Apps       []string
	Kind       string
	Users      string
	Teams      string
	AllApps    []string
	Events     []eventChoice
	Reminders  []string
	Kinds      []kindChoice
	Errors     map[string]string
	Hidden     url.Values
	Notice     string
	Deliveries []v1alpha1.Delivery
	Ready      string
	// MayPatch and MayDelete: what the user may do to it (the manage page).
	MayPatch, MayDelete bool
	// Generation and UID are those of the notification the manage page
	// shows: a save or delete of one changed or replaced meanwhile is
	// refused.
	Generation int64
	UID        string
}

type eventChoice struct{ Value, Label, Explain string }
type kindChoice struct{ Value, Label string }

var events = []eventChoice{
	{string(v1alpha1.EventAppInstalled), "App installed", "When an app gets its first token."},
	{string(v1alpha1.EventAppDisconnected), "App disconnected", "When an app is disconnected (suspended, expired or failing), and again at the reminder frequency while it stays so."},
	{string(v1alpha1.EventAppUninstalled), "App uninstalled", "When an app is deleted and its tokens revoked."},
}

var kinds = []kindChoice{
	{string(v1alpha1.RecipientsSuperAdmins), "Super admins"},
	{string(v1alpha1.RecipientsEveryone), "Everyone"},
	{string(v1alpha1.RecipientsSpecific), "Specific users and teams"},
}

func (c *Console) newNoteForm(r *http.Request, ns string) (noteForm, error) {
	f := noteForm{Steps: wizardSteps, Events: events, Kinds: kinds, Errors: map[string]string{},
		Reminders: []string{"", string(v1alpha1.ReminderHourly), string(v1alpha1.ReminderDaily), string(v1alpha1.ReminderWeekly), string(v1alpha1.ReminderMonthly)}}
	apps, err := c.listApps(r.Context(), ns)
	if err != nil {
		return f, err
	}
	for _, a := range apps {
		f.AllApps = append(f.AllApps, a.Name)
	}
	return f, nil
}

// read takes the fields posted; step limits the checks to the steps done.
func (f *noteForm) read(r *http.Request) {
	if !f.Editing {
		f.Name = strings.TrimSpace(r.PostFormValue("name"))
	}
	f.Event, f.Reminder, f.Kind = r.PostFormValue("event"), r.PostFormValue("reminder"), r.PostFormValue("kind")
	f.Apps = r.PostForm["app"]
	f.Users, f.Teams = strings.TrimSpace(r.PostFormValue("users")), strings.TrimSpace(r.PostFormValue("teams"))
}

// check says what is wrong with the fields of the steps up to upTo.
func (f *noteForm) check(upTo int) {
	f.Errors = map[string]string{}
	if upTo >= 0 && !f.Editing {
		if errs := validation.IsDNS1123Subdomain(f.Name); f.Name == "" || len(errs) > 0 {
			f.Errors["name"] = "The name is the notification's Kubernetes name: lower-case letters, digits, '-' and '.', e.g. billing-disconnected."
		}
	}
	if upTo >= 1 {
		if !slices.ContainsFunc(events, func(e eventChoice) bool { return e.Value == f.Event }) {
			f.Errors["event"] = "Choose what to be told about: installed, disconnected or uninstalled."
		} else if f.Reminder != "" && f.Event != string(v1alpha1.EventAppDisconnected) {
			f.Errors["event"] = "A reminder repeats a disconnection only; leave it at none for this type."
		} else if !slices.Contains(f.Reminders, f.Reminder) {
			f.Errors["event"] = "Choose a reminder frequency from the list."
		}
	}
	if upTo >= 2 {
		for _, a := range f.Apps {
			if !slices.Contains(f.AllApps, a) {
				f.Errors["apps"] = fmt.Sprintf("There is no app %q in this namespace any more.", a)
			}
		}
		if f.Event == string(v1alpha1.EventAppDisconnected) && len(f.Apps) == 0 {
			f.Errors["apps"] = "Pick the apps to watch: a disconnection notification names its apps."
		}
	}
	if upTo >= 3 {
		switch f.Kind {
		case string(v1alpha1.RecipientsSuperAdmins), string(v1alpha1.RecipientsEveryone):
			if f.Users != "" || f.Teams != "" {
				f.Errors["recipients"] = "Users and teams go with Specific users and teams; clear them or choose that."
			}
		case string(v1alpha1.RecipientsSpecific):
			if f.Users == "" && f.Teams == "" {
				f.Errors["recipients"] = "Name at least one user or team, as the operator's directory knows them."
			}
		default:
			f.Errors["recipients"] = "Choose who is told."
		}
	}
}

// hidden carries the other steps' answers.
func (f *noteForm) hidden() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !f.Editing {
		set("name", f.Name)
	}
	if f.Step != 1 {
		set("event", f.Event)
		set("reminder", f.Reminder)
	}
	if f.Step != 2 {
		v["app"] = f.Apps
	}
	if f.Step != 3 {
		set("kind", f.Kind)
		set("users", f.Users)
		set("teams", f.Teams)
	}
	if f.Step == 0 {
		v.Del("name")
	}
	return v
}

func (f *noteForm) spec() v1alpha1.AppNotificationSpec {
	s := v1alpha1.AppNotificationSpec{Event: v1alpha1.NotificationEvent(f.Event), Reminder: v1alpha1.ReminderFrequency(f.Reminder),
		Apps: slices.Clone(f.Apps), Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientKind(f.Kind)}}
	// Empty lists stay unset: the API admits users and teams only with
	// kind Specific.
	if users := strings.Fields(strings.ReplaceAll(f.Users, ",", " ")); len(users) > 0 {
		s.Recipients.Users = users
	}
	if teams := strings.Fields(strings.ReplaceAll(f.Teams, ",", " ")); len(teams) > 0 {
		s.Recipients.Teams = teams
	}
	if len(s.Apps) == 0 {
		s.Apps = nil
	}
	return s
}

func (c *Console) notifications(w http.ResponseWriter, r *http.Request) {
	ns, ok := c.ns(w, r)
	if !ok {
		return
	}
	var l v1alpha1.AppNotificationList
	if err := c.c.List(r.Context(), &l, client.InNamespace(ns)); err != nil {
		c.fail(w, r, ns, "list the notifications", err)
		return
	}
	slices.SortFunc(l.Items, func(a, b v1alpha1.AppNotification) int { return cmp.Compare(a.Name, b.Name) })
	type row struct {
		Name, Event, Apps, Reminder, Recipients, Status string
		LastDelivery                                    *metav1.Time
	}
	q, event := strings.TrimSpace(r.URL.Query().Get("q")), r.URL.Query().Get("event")
	var data struct {
		Rows      []row
		Q, Event  string
		Events    []eventChoice
		CanCreate bool
	}
	data.Q, data.Event, data.Events = q, event, events
	data.CanCreate = c.access(r.Context(), ns, group, "appnotifications", "create", "")
	for _, n := range l.Items {
		if q != "" && !strings.Contains(n.Name, q) || event != "" && string(n.Spec.Event) != event {
			continue
		}
		apps := "every app"
		if len(n.Spec.Apps) > 0 {
			apps = strings.Join(n.Spec.Apps, ", ")
		}
		status := "-"
		if cond := meta.FindStatusCondition(n.Status.Conditions, v1alpha1.ConditionReady); cond != nil {
			status = cond.Reason
		}
		data.Rows = append(data.Rows, row{Name: n.Name, Event: string(n.Spec.Event), Apps: apps, Reminder: string(n.Spec.Reminder),
			Recipients: recipients(n.Spec.Recipients), Status: status, LastDelivery: n.Status.LastDeliveryTime})
	}
	c.render(w, r, "notifications", page{Title: "Notifications", Namespace: ns, Menu: "notifications", Notice: c.notice(r),
		Kubectl: "kubectl get appnotifications -n " + ns, Data: data})
}

// nullIfNone is a list for a merge patch: null (unset) when empty.
func nullIfNone(l []string) any {
	if len(l) == 0 {
		return nil
	}
	return l
}

func recipients(r v1alpha1.Recipients) string {
	switch r.Kind {
	case v1alpha1.RecipientsSuperAdmins:
		return "Super admins"
	case v1alpha1.RecipientsEveryone:
		return "Everyone"
	}
	return strings.Join(append(slices.Clone(r.Users), prefixed("team ", r.Teams)...), ", ")
}

func prefixed(p string, s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = p + x
	}
	return out
}

// wizard shows the create wizard's first step, or, on POST, checks the
// step just answered and shows the next (or the one asked with "back"),
// creating the notification from the review step.
func (c *Console) wizard(w http.ResponseWriter, r *http.Request) {
	ns, ok := c.ns(w, r)
	if !ok {
		return
	}
	f, err := c.newNoteForm(r, ns)
	if err != nil {
		c.fail(w, r, ns, "list the apps", err)
		return
	}
	p := page{Title: "Create a notification", Namespace: ns, Menu: "notifications", Kubectl: "kubectl apply -n " + ns + " -f notification.yaml   # an AppNotification"}
	if r.Method == http.MethodPost {
		f.read(r)
		var at int
		if _, err := fmt.Sscan(r.PostFormValue("step"), &at); err != nil || at < 0 || at >= len(wizardSteps) {
			at = 0
		}
		switch {
		case r.PostFormValue("back") != "" && at > 0:
			f.Step = at - 1
		default:
			f.check(at)
			if len(f.Errors) > 0 {
				f.Step = firstStepWithError(f.Errors)
				f.Hidden = f.hidden()
				p.Data = f
				c.badInput(w, r, "wizard", p)
				return
			}
			f.Step = at + 1
		}
		if f.Step == len(wizardSteps) {
			n := &v1alpha1.AppNotification{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: f.Name}, Spec: f.spec()}
			if err := c.c.Create(r.Context(), n); err != nil {
				if apierrors.IsAlreadyExists(err) {
					f.Step, f.Errors["name"] = 0, fmt.Sprintf("A notification named %s exists in %s already; pick another name.", f.Name, ns)
					f.Hidden = f.hidden()
					p.Data = f
					c.badInput(w, r, "wizard", p)
					return
				}
				c.fail(w, r, ns, "create the notification", err)
				return
			}
			seeOther(w, r, "/n/"+ns+"/notifications/"+url.PathEscape(n.Name)+"?done=noted")
			return
		}
	}
	f.Hidden = f.hidden()
	p.Data = f
	c.render(w, r, "wizard", p)
}

func (c *Console) getNotification(w http.ResponseWriter, r *http.Request) (*v1alpha1.AppNotification, bool) {
	ns, ok := c.ns(w, r)
	if !ok {
		return nil, false
	}
	n := &v1alpha1.AppNotification{}
	if err := c.c.Get(r.Context(), client.ObjectKey{Namespace: ns, Name: r.PathValue("name")}, n); err != nil {
		c.fail(w, r, ns, "read the notification", err)
		return nil, false
	}
	return n, true
}

// notification is the manage page: the settings as one form, the
// deliveries, and delete.
func (c *Console) notification(w http.ResponseWriter, r *http.Request) {
	n, ok := c.getNotification(w, r)
	if !ok {
		return
	}
	f, err := c.newNoteForm(r, n.Namespace)
	if err != nil {
		c.fail(w, r, n.Namespace, "list the apps", err)
		return
	}
	f.Editing, f.Name, f.Event, f.Reminder, f.Apps = true, n.Name, string(n.Spec.Event), string(n.Spec.Reminder), n.Spec.Apps
	f.Generation, f.UID = n.Generation, string(n.UID)
	// Apps the notification names that do not exist (yet, or any more)
	// stay choices, so that a save keeps them.
	for _, a := range n.Spec.Apps {
		if !slices.Contains(f.AllApps, a) {
			f.AllApps = append(f.AllApps, a)
		}
	}
	slices.Sort(f.AllApps)
	f.Kind, f.Users, f.Teams = string(n.Spec.Recipients.Kind), strings.Join(n.Spec.Recipients.Users, " "), strings.Join(n.Spec.Recipients.Teams, " ")
	code := http.StatusOK
	if r.Method == http.MethodPost {
		if !sameGeneration(r, n.Generation) {
			changedMeanwhile(c, w, n.Namespace, "The notification", "/n/"+n.Namespace+"/notifications/"+n.Name)
			return
		}
		f.read(r)
		f.check(3)
		if len(f.Errors) == 0 {
			spec := f.spec()
			patch, _ := json.Marshal(map[string]any{
				"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
				"spec": map[string]any{"event": spec.Event, "reminder": nullIfEmpty(string(spec.Reminder)), "apps": nullIfNone(spec.Apps),
					"recipients": map[string]any{"kind": spec.Recipients.Kind, "users": nullIfNone(spec.Recipients.Users),
						"teams": nullIfNone(spec.Recipients.Teams)}},
			})
			if err := c.c.Patch(r.Context(), n, client.RawPatch(types.MergePatchType, patch)); err != nil {
				c.fail(w, r, n.Namespace, "save the notification", err)
				return
			}
			seeOther(w, r, "/n/"+n.Namespace+"/notifications/"+url.PathEscape(n.Name)+"?done=saved-note")
			return
		}
		code = http.StatusUnprocessableEntity
	}
	f.Deliveries = slices.Clone(n.Status.Deliveries)
	slices.SortFunc(f.Deliveries, func(a, b v1alpha1.Delivery) int { return b.Time.Compare(a.Time.Time) })
	if len(f.Deliveries) > 20 {
		f.Deliveries = f.Deliveries[:20]
	}
	if cond := meta.FindStatusCondition(n.Status.Conditions, v1alpha1.ConditionReady); cond != nil {
		f.Ready = cond.Reason + ": " + cond.Message
	}
	f.MayPatch = c.access(r.Context(), n.Namespace, group, "appnotifications", "patch", n.Name)
	f.MayDelete = c.access(r.Context(), n.Namespace, group, "appnotifications", "delete", n.Name)
	c.renderCode(w, code, "notification", page{Title: "Notification " + n.Name, Namespace: n.Namespace, Menu: "notifications", Notice: c.notice(r),
		Kubectl: fmt.Sprintf("kubectl describe appnotification -n %s %s", n.Namespace, n.Name), Data: f})
}

func (c *Console) deleteNotification(w http.ResponseWriter, r *http.Request) {
	n, ok := c.getNotification(w, r)
	if !ok {
		return
	}
	uid := types.UID(r.PostFormValue("uid"))
	if uid != n.UID {
		c.renderCode(w, http.StatusConflict, "message", page{Title: "Not deleted", Namespace: n.Namespace, Menu: "notifications",
			Message: "The notification named " + n.Name + " is not the one the page showed (it was deleted and created again); nothing was deleted."})
		return
	}
	if err := c.c.Delete(r.Context(), n, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) {
		c.fail(w, r, n.Namespace, "delete the notification", err)
		return
	}
	seeOther(w, r, "/n/"+n.Namespace+"/notifications?done=deleted-note")
}

// firstStepWithError is the wizard step whose field an error is about, the
// earliest when several are: an answer that went stale (an app deleted
// while on Review) is fixed where it was given.
func firstStepWithError(errs map[string]string) int {
	for step, field := range []string{"name", "event", "apps", "recipients"} {
		if _, ok := errs[field]; ok {
			return step
		}
	}
	return 0
}
