package notify_test

import (
	"context"
	"io"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/notify"
	"github.com/privateapps-dev/privateapp-operator/internal/notify/notifytest"
)

const directoryYAML = `
superAdmins: [alice]
users:
  alice: alice@example.com
  bob: bob@example.com
  carol: carol@example.com
teams:
  platform: [alice, bob]
  security: [carol]
`

func TestParseDirectory(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "valid", yaml: directoryYAML},
		{name: "empty", yaml: ``},
		{name: "unknown key", yaml: "admins: [alice]\n", wantErr: `unknown field "admins"`},
		{name: "bad address", yaml: "users: {alice: not-an-address}\n", wantErr: `users.alice: "not-an-address" is not a plain email address`},
		{name: "address with a name", yaml: "users: {alice: 'Alice <alice@example.com>'}\n", wantErr: "is not a plain email address"},
		{name: "superAdmin not a user", yaml: "superAdmins: [dave]\nusers: {alice: alice@example.com}\n", wantErr: `superAdmins: "dave" is not in users`},
		{name: "team member not a user", yaml: "users: {alice: alice@example.com}\nteams: {ops: [alice, erin]}\n", wantErr: `teams.ops: "erin" is not in users`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := notify.ParseDirectory([]byte(tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseDirectory: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseDirectory error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	dir, err := notify.ParseDirectory([]byte(directoryYAML))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		kind         string
		users, teams []string
		want         []string
		unknownUsers []string
		unknownTeams []string
	}{
		{name: "super admins", kind: "SuperAdmins", want: []string{"alice@example.com"}},
		{name: "everyone", kind: "Everyone", want: []string{"alice@example.com", "bob@example.com", "carol@example.com"}},
		{name: "users and teams, each once", kind: "Specific", users: []string{"bob"}, teams: []string{"platform"},
			want: []string{"alice@example.com", "bob@example.com"}},
		{name: "unknown names are reported, the rest served", kind: "Specific", users: []string{"carol", "zed"}, teams: []string{"ops"},
			want: []string{"carol@example.com"}, unknownUsers: []string{"zed"}, unknownTeams: []string{"ops"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := dir.Resolve(tt.kind, tt.users, tt.teams)
			var got []string
			for _, r := range res.Recipients {
				got = append(got, r.Email)
			}
			if !reflect.DeepEqual(got, tt.want) || !reflect.DeepEqual(res.UnknownUsers, tt.unknownUsers) ||
				!reflect.DeepEqual(res.UnknownTeams, tt.unknownTeams) {
				t.Fatalf("Resolve = %v unknown users %v teams %v; want %v, %v, %v",
					got, res.UnknownUsers, res.UnknownTeams, tt.want, tt.unknownUsers, tt.unknownTeams)
			}
		})
	}
}

func TestReminderDue(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name  string
		start string
		freq  notify.Frequency
		n     int
		want  string
	}{
		{"hourly", "2026-03-01T09:15:00Z", notify.Hourly, 3, "2026-03-01T12:15:00Z"},
		{"daily", "2026-03-01T09:15:00Z", notify.Daily, 2, "2026-03-03T09:15:00Z"},
		{"weekly", "2026-03-01T09:15:00Z", notify.Weekly, 1, "2026-03-08T09:15:00Z"},
		{"monthly keeps the day", "2026-01-15T08:00:00Z", notify.Monthly, 1, "2026-02-15T08:00:00Z"},
		{"monthly clamps to a short month", "2026-01-31T08:00:00Z", notify.Monthly, 1, "2026-02-28T08:00:00Z"},
		{"monthly returns to the day after a short month", "2026-01-31T08:00:00Z", notify.Monthly, 2, "2026-03-31T08:00:00Z"},
		{"monthly clamps to 30 days", "2026-01-31T08:00:00Z", notify.Monthly, 3, "2026-04-30T08:00:00Z"},
		{"monthly in a leap year", "2028-01-31T08:00:00Z", notify.Monthly, 1, "2028-02-29T08:00:00Z"},
		{"monthly across the year", "2026-11-30T23:30:00Z", notify.Monthly, 3, "2027-02-28T23:30:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := notify.ReminderDue(at(tt.start), tt.freq, tt.n); !got.Equal(at(tt.want)) {
				t.Fatalf("ReminderDue(%s, %s, %d) = %s, want %s", tt.start, tt.freq, tt.n, got, tt.want)
			}
		})
	}
	start := at("2026-01-31T08:00:00Z")
	for _, tt := range []struct {
		freq notify.Frequency
		now  string
		want int
	}{
		{notify.Hourly, "2026-01-31T07:00:00Z", 0},
		{notify.Hourly, "2026-01-31T10:59:59Z", 2},
		{notify.Hourly, "2026-01-31T11:00:00Z", 3},
		{notify.Daily, "2026-02-03T08:00:00Z", 3},
		{notify.Weekly, "2026-02-14T07:59:59Z", 1},
		{notify.Monthly, "2026-02-28T07:59:59Z", 0},
		{notify.Monthly, "2026-02-28T08:00:00Z", 1},
		{notify.Monthly, "2026-05-01T00:00:00Z", 3},
	} {
		if got := notify.RemindersDue(start, tt.freq, at(tt.now)); got != tt.want {
			t.Errorf("RemindersDue(%s, %s) = %d, want %d", tt.freq, tt.now, got, tt.want)
		}
	}
}

func TestSignAndVerify(t *testing.T) {
	// Known answer from `printf '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac key`.
	body := []byte(`{"id":"x"}`)
	if got, want := notify.Sign([]byte("key"), "1700000000", body),
		"v1=c275209bfed50f54f9b0d8dafaf250f3f08155fdaadece7fc4d3f5c7e3c8b6ba"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	now := time.Unix(1700000000, 0)
	sig := notify.Sign([]byte("key"), "1700000000", body)
	tests := []struct {
		name, secret, ts, sig string
		body                  []byte
		now                   time.Time
		wantErr               string
	}{
		{name: "valid", secret: "key", ts: "1700000000", sig: sig, body: body, now: now},
		{name: "tampered body", secret: "key", ts: "1700000000", sig: sig, body: []byte(`{"id":"y"}`), now: now, wantErr: "does not match"},
		{name: "wrong secret", secret: "other", ts: "1700000000", sig: sig, body: body, now: now, wantErr: "does not match"},
		{name: "replayed later", secret: "key", ts: "1700000000", sig: sig, body: body, now: now.Add(10 * time.Minute), wantErr: "more than 5m0s"},
		{name: "timestamp not a number", secret: "key", ts: "yesterday", sig: sig, body: body, now: now, wantErr: "unix seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := notify.Verify([]byte(tt.secret), tt.ts, tt.sig, tt.body, tt.now, 5*time.Minute)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Verify = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func sample(event string, reminder int) notify.Notification {
	since := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	return notify.Notification{
		ID: notify.NotificationID("n-uid", "a-uid", event, since, reminder), Event: event, Reminder: reminder,
		Time: since.Add(time.Duration(reminder) * time.Hour), DisconnectedSince: &since,
		App:    notify.App{Namespace: "team-a", Name: "deployer", UID: "a-uid", DisplayName: "Deployer ✓", InstalledBy: "alice", Connection: "Disconnected"},
		Source: notify.Source{Namespace: "team-a", Name: "ops"},
	}
}

func TestMessages(t *testing.T) {
	tests := []struct {
		event    string
		reminder int
		subject  string
		body     []string
	}{
		{notify.AppInstalled, 0, "[privateapps] App deployer in namespace team-a was installed",
			[]string{"Deployer ✓ (deployer) was installed in namespace team-a at Sun, 01 Mar 2026 09:00:00 UTC by alice"}},
		{notify.AppDisconnected, 0, "[privateapps] App deployer in namespace team-a was disconnected",
			[]string{"was disconnected at Sun, 01 Mar 2026 09:00:00 UTC", `kubectl -n team-a patch privateapp deployer --type merge -p '{"spec":{"suspend":false}}'`}},
		{notify.AppDisconnected, 2, "[privateapps] App deployer in namespace team-a is still disconnected",
			[]string{"Reminder 2: the private app Deployer ✓ (deployer) in namespace team-a has been disconnected since Sun, 01 Mar 2026 09:00:00 UTC"}},
		{notify.AppUninstalled, 0, "[privateapps] App deployer in namespace team-a was uninstalled",
			[]string{"was uninstalled from namespace team-a", "Its tokens are revoked"}},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			n := sample(tt.event, tt.reminder)
			if got := n.Subject(); got != tt.subject {
				t.Errorf("Subject = %q, want %q", got, tt.subject)
			}
			body := n.Body()
			for _, want := range append(tt.body, "AppNotification team-a/ops (notification id "+n.ID+")") {
				if !strings.Contains(body, want) {
					t.Errorf("Body lacks %q:\n%s", want, body)
				}
			}
		})
	}
	if a, b := notify.NotificationID("n", "a", notify.AppDisconnected, time.Unix(0, 0), 1),
		notify.NotificationID("n", "a", notify.AppDisconnected, time.Unix(0, 0), 2); a == b || len(a) != 32 {
		t.Fatalf("ids of reminders 1 and 2: %s, %s; want two different 32-character ids", a, b)
	}
}

func TestMailerOverSTARTTLSWithAuth(t *testing.T) {
	srv, err := notifytest.StartSMTP(notifytest.SMTPOptions{StartTLS: true, Username: "operator", Password: "s3cret-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	m := &notify.Mailer{Address: srv.Addr, From: "Private apps <privateapps@example.com>", TLS: notify.StartTLS,
		Username: "operator", Password: "s3cret-pw", RootCAs: srv.CertPool, Timeout: 5 * time.Second}
	n := sample(notify.AppDisconnected, 0)
	to := []notify.Recipient{{User: "alice", Email: "alice@example.com"}, {User: "bob", Email: "bob@example.com"}}
	now := time.Date(2026, 3, 1, 9, 0, 5, 0, time.UTC)
	if failed := m.Send(context.Background(), now, n, to); len(failed) != 0 {
		t.Fatalf("Send failed for %v", failed)
	}
	msgs := srv.Messages()
	if got := notifytest.Recipients(msgs); !reflect.DeepEqual(got, []string{"alice@example.com", "bob@example.com"}) {
		t.Fatalf("server received messages for %v, want one each for alice and bob", got)
	}
	for _, msg := range msgs {
		if !msg.TLS || msg.User != "operator" || msg.From != "privateapps@example.com" {
			t.Errorf("message TLS=%v user=%q from=%q; want TLS, user operator, from privateapps@example.com", msg.TLS, msg.User, msg.From)
		}
		parsed, err := mail.ReadMessage(strings.NewReader(string(msg.Data)))
		if err != nil {
			t.Fatal(err)
		}
		if got := parsed.Header.Get("Subject"); got != n.Subject() {
			t.Errorf("Subject = %q, want %q", got, n.Subject())
		}
		if got := parsed.Header.Get("X-PrivateApps-Notification-Id"); got != n.ID {
			t.Errorf("notification id header = %q, want %q", got, n.ID)
		}
		if got := parsed.Header.Get("To"); got != msg.To[0] {
			t.Errorf("To header %q, envelope %q: each recipient sees only their own address", got, msg.To[0])
		}
		body, err := io.ReadAll(quotedprintable.NewReader(parsed.Body))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), "Deployer ✓ (deployer) in namespace team-a was disconnected") {
			t.Errorf("body does not say what happened:\n%s", body)
		}
	}
	if msgs[0].Header("Message-ID") == msgs[1].Header("Message-ID") {
		t.Error("two recipients got the same Message-ID")
	}
}

func TestMailerFailures(t *testing.T) {
	srv, err := notifytest.StartSMTP(notifytest.SMTPOptions{StartTLS: true, Username: "operator", Password: "s3cret-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	plain, err := notifytest.StartSMTP(notifytest.SMTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()

	to := []notify.Recipient{{User: "alice", Email: "alice@example.com"}, {User: "bob", Email: "bob@example.com"}}
	mailer := func(addr, password string) *notify.Mailer {
		return &notify.Mailer{Address: addr, From: "privateapps@example.com", TLS: notify.StartTLS,
			Username: "operator", Password: password, RootCAs: srv.CertPool, Timeout: 5 * time.Second}
	}
	tests := []struct {
		name    string
		m       *notify.Mailer
		setup   func()
		failed  []string
		wantErr string
	}{
		{name: "rejected recipient fails alone", m: mailer(srv.Addr, "s3cret-pw"),
			setup: func() { srv.Reject("bob@example.com") }, failed: []string{"bob"}, wantErr: "no such user here"},
		{name: "temporary failure", m: mailer(srv.Addr, "s3cret-pw"),
			setup: func() { srv.FailNext(1) }, failed: []string{"alice"}, wantErr: "try again later"},
		{name: "wrong password", m: mailer(srv.Addr, "wrong-pw"), failed: []string{"alice", "bob"}, wantErr: `authentication as "operator"`},
		{name: "no STARTTLS offered", m: mailer(plain.Addr, "s3cret-pw"), failed: []string{"alice", "bob"}, wantErr: "does not offer STARTTLS"},
		{name: "nobody listening", m: mailer(deadAddr, "s3cret-pw"), failed: []string{"alice", "bob"}, wantErr: "cannot connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Reset()
			if tt.setup != nil {
				tt.setup()
			}
			failed := tt.m.Send(context.Background(), time.Now(), sample(notify.AppInstalled, 0), to)
			var who []string
			for _, r := range to {
				if err := failed[r.User]; err != nil {
					who = append(who, r.User)
					if !strings.Contains(err.Error(), tt.wantErr) {
						t.Errorf("%s: error %q, want it to contain %q", r.User, err, tt.wantErr)
					}
					if strings.Contains(err.Error(), tt.m.Password) {
						t.Errorf("the error shows the password: %q", err)
					}
				}
			}
			if !reflect.DeepEqual(who, tt.failed) {
				t.Fatalf("failed for %v, want %v", who, tt.failed)
			}
		})
	}
}

func TestWebhookDelivery(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	rcv := notifytest.StartReceiver(secret)
	defer rcv.Close()
	n := sample(notify.AppUninstalled, 0)
	to := []notify.Recipient{{User: "alice", Email: "alice@example.com"}}

	w := &notify.Webhook{URL: rcv.URL, Secret: secret}
	if err := w.Send(context.Background(), time.Now(), n, to); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := rcv.Payloads()
	if len(got) != 1 || got[0].ID != n.ID || got[0].Event != notify.AppUninstalled || got[0].App.Name != "deployer" ||
		!reflect.DeepEqual(got[0].Recipients, to) || got[0].Source.Name != "ops" {
		t.Fatalf("receiver got %+v", got)
	}

	rcv.FailNext(1)
	if err := w.Send(context.Background(), time.Now(), n, to); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Send to a failing receiver = %v, want a 503 error", err)
	}
	forged := &notify.Webhook{URL: rcv.URL, Secret: []byte("not-the-shared-secret")}
	if err := forged.Send(context.Background(), time.Now(), n, to); err == nil {
		t.Fatal("a request signed with another secret was accepted")
	}
	if r := rcv.Refused(); len(r) != 1 || !strings.Contains(r[0], "signature does not match") {
		t.Fatalf("receiver refusals = %v, want one signature mismatch", r)
	}

	// Errors go into status and Events: they name the scheme and host of a
	// webhook, never the path or query that hold its secret.
	const secretPath = "/services/T000/B000/XXXXsecretXXXX?token=hunter2"
	rcv.FailNext(1)
	withSecret := &notify.Webhook{URL: rcv.URL + secretPath, Secret: secret}
	unreachable := &notify.Webhook{URL: "http://127.0.0.1:1" + secretPath, Secret: secret}
	for _, hook := range []*notify.Webhook{withSecret, unreachable} {
		err := hook.Send(context.Background(), time.Now(), n, to)
		if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "http://127.0.0.1:") {
			t.Errorf("Send error %q: want one naming only the scheme and host", err)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user, pass := write("user", "operator\n"), write("pass", "hunter2-password\n")
	hook, short := write("hook", "0123456789abcdef0123\n"), write("short", "abc\n")
	slackURL, notURL := write("slack-url", "https://hooks.slack.com/services/T0/B0/hunter2secret\n"), write("not-url", "hunter2secret\n")
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(*notify.Channels) string
	}{
		{name: "full", yaml: `
smtp: {address: "smtp.example.com:587", from: "Private apps <privateapps@example.com>", usernameFile: ` + user + `, passwordFile: ` + pass + `}
webhook: {url: "https://hooks.example.com/x", secretFile: ` + hook + `, timeout: 3s}
directory: {name: people}`,
			check: func(c *notify.Channels) string {
				if c.Mailer.Username != "operator" || c.Mailer.Password != "hunter2-password" || c.Mailer.TLS != notify.StartTLS {
					return "smtp credentials or default TLS mode not loaded"
				}
				if c.Webhook.Client.Timeout != 3*time.Second || string(c.Webhook.Secret) != "0123456789abcdef0123" {
					return "webhook timeout or secret not loaded"
				}
				if c.DirectoryNamespace != "operator-ns" || c.DirectoryName != "people" {
					return "directory " + c.DirectoryNamespace + "/" + c.DirectoryName
				}
				return ""
			}},
		{name: "unknown key", yaml: "smtp: {host: x}\n", wantErr: `unknown field "host"`},
		{name: "address without port", yaml: "smtp: {address: smtp.example.com, from: a@example.com}\n", wantErr: "must be host:port"},
		{name: "bad tls", yaml: "smtp: {address: 'h:25', from: a@example.com, tls: Always}\n", wantErr: "must be StartTLS, TLS or None"},
		{name: "username without password", yaml: "smtp: {address: 'h:25', from: a@example.com, usernameFile: " + user + "}\n", wantErr: "go together"},
		{name: "webhook without secret", yaml: "webhook: {url: 'https://h/x'}\n", wantErr: "webhook.secretFile is required"},
		{name: "short webhook secret", yaml: "webhook: {url: 'https://h/x', secretFile: " + short + "}\n", wantErr: "use at least 16"},
		{name: "bad timeout", yaml: "webhook: {url: 'https://h/x', secretFile: " + hook + ", timeout: soon}\n", wantErr: "not a duration"},
		{name: "chats", yaml: "chat:\n- {format: Slack, urlFile: " + slackURL + "}\n- {name: ops-teams, format: Teams, urlFile: " + slackURL + ", timeout: 4s}\n",
			check: func(c *notify.Channels) string {
				if len(c.Chats) != 2 || c.Chats[0].Recipient() != "chat:slack" || c.Chats[1].Recipient() != "chat:ops-teams" ||
					c.Chats[0].URL != "https://hooks.slack.com/services/T0/B0/hunter2secret" || c.Chats[1].Client.Timeout != 4*time.Second {
					return "chats not loaded as configured"
				}
				return ""
			}},
		{name: "chat format", yaml: "chat: [{format: Discord, urlFile: " + slackURL + "}]\n", wantErr: `chat[0].format "Discord" must be Slack`},
		{name: "chat without URL", yaml: "chat: [{format: Slack}]\n", wantErr: "chat[0].urlFile is required"},
		{name: "chat URL file without a URL", yaml: "chat: [{format: Slack, urlFile: " + notURL + "}]\n", wantErr: "does not hold an http(s) URL"},
		{name: "two chats of one name", yaml: "chat: [{format: Slack, urlFile: " + slackURL + "}, {format: Slack, urlFile: " + slackURL + "}]\n", wantErr: `two chats are named "slack"`},
		{name: "chat name", yaml: "chat: [{name: Ops_Chat, format: Slack, urlFile: " + slackURL + "}]\n", wantErr: "lower-case letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := notify.LoadConfig(write("config.yaml", tt.yaml), "operator-ns")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadConfig error = %v, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("the error shows a credential: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tt.check(c); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

func TestMailerGivesUpOnASilentServer(t *testing.T) {
	// A server that accepts the connection and never says a word.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	m := &notify.Mailer{Address: l.Addr().String(), From: "privateapps@example.com", Timeout: 200 * time.Millisecond}
	done := make(chan map[string]error, 1)
	go func() {
		done <- m.Send(context.Background(), time.Now(), sample(notify.AppInstalled, 0), []notify.Recipient{{User: "alice", Email: "alice@example.com"}})
	}()
	select {
	case failed := <-done:
		if err := failed["alice"]; err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("Send to a silent server: %v, want a timeout error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Send to a silent server did not return: the session timeout does not bound it")
	}
}

// TestChatDelivery posts each event to a Slack and a Teams receiver that
// check the documented message shapes; the command that acts on a
// disconnect is in a code block; markup in names is escaped; a failure is
// an error that names only the scheme and host.
func TestChatDelivery(t *testing.T) {
	for _, format := range []string{notify.ChatSlack, notify.ChatTeams} {
		t.Run(format, func(t *testing.T) {
			rcv := notifytest.StartChatReceiver(format)
			defer rcv.Close()
			chat := &notify.Chat{Name: "team", Format: format, URL: rcv.WebhookURL()}
			for _, ev := range []string{notify.AppInstalled, notify.AppDisconnected, notify.AppUninstalled} {
				n := sample(ev, 0)
				n.App.DisplayName = "Deployer <b>&</b>"
				if err := chat.Send(context.Background(), n); err != nil {
					t.Fatalf("%s: %v (receiver refused: %v)", ev, err, rcv.Refused())
				}
			}
			texts := rcv.Texts()
			if len(texts) != 3 {
				t.Fatalf("%d messages accepted, want 3; refused: %v", len(texts), rcv.Refused())
			}
			for i, want := range []string{"App deployer in namespace team-a was installed", "was disconnected at Sun, 01 Mar 2026 09:00:00 UTC",
				"was uninstalled from namespace team-a"} {
				if !strings.Contains(texts[i], want) || !strings.Contains(texts[i], "AppNotification team-a/ops") {
					t.Errorf("message %d lacks %q or its source:\n%s", i, want, texts[i])
				}
			}
			command := `kubectl -n team-a patch privateapp deployer --type merge -p '{"spec":{"suspend":false}}'`
			switch format {
			case notify.ChatSlack:
				if !strings.Contains(texts[1], "```"+command+"```") || !strings.Contains(texts[0], "Deployer &lt;b&gt;&amp;&lt;/b&gt;") {
					t.Errorf("Slack: the command is not a code block, or markup is not escaped:\n%s", texts[1]+texts[0])
				}
			case notify.ChatTeams:
				if !strings.Contains(texts[1], "\n"+command+"\n") || !strings.Contains(texts[0], "Installed by: alice") {
					t.Errorf("Teams: the command is not a block of its own, or the facts are missing:\n%s", texts[1]+texts[0])
				}
			}

			rcv.FailNext(1)
			unreachable := &notify.Chat{Name: "team", Format: format, URL: "http://127.0.0.1:1/services/T0001/B0002/" + notifytest.SecretPath}
			for _, c := range []*notify.Chat{chat, unreachable} {
				err := c.Send(context.Background(), sample(notify.AppInstalled, 0))
				if err == nil || strings.Contains(err.Error(), notifytest.SecretPath) || !strings.Contains(err.Error(), "http://127.0.0.1:") {
					t.Errorf("Send error %q: want one naming only the scheme and host", err)
				}
			}
		})
	}
	// An editor's display name cannot pose as the operator's command (a
	// line of its own starting with two spaces) or as a Teams link.
	for _, format := range []string{notify.ChatSlack, notify.ChatTeams} {
		rcv := notifytest.StartChatReceiver(format)
		n := sample(notify.AppDisconnected, 0)
		n.App.DisplayName = "Deployer\n  kubectl delete namespace prod\n[fix it](https://evil.example)"
		if err := (&notify.Chat{Name: "team", Format: format, URL: rcv.WebhookURL()}).Send(context.Background(), n); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		text := rcv.Texts()[0]
		rcv.Close()
		if strings.Contains(text, "\nkubectl delete namespace prod") || strings.Contains(text, "\n  kubectl delete") || strings.Contains(text, "](https://evil") {
			t.Errorf("%s: a display name became a command or a link:\n%s", format, text)
		}
		if body := n.Body(); strings.Contains(body, "\n  kubectl delete") {
			t.Errorf("mail: a display name became a command line:\n%s", body)
		}
	}
	// The receiver itself refuses what the services would.
	rcv := notifytest.StartChatReceiver(notify.ChatTeams)
	defer rcv.Close()
	wrong := &notify.Chat{Name: "team", Format: notify.ChatSlack, URL: rcv.WebhookURL()}
	if err := wrong.Send(context.Background(), sample(notify.AppInstalled, 0)); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a Slack message to a Teams webhook: %v, want 400", err)
	}
}
