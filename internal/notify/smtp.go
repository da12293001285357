package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"time"
)

// TLSMode is how the SMTP connection is protected.
type TLSMode string

// TLS modes.
const (
	// StartTLS upgrades a plain connection (usually port 587) and refuses
	// to go on when the server does not offer it.
	StartTLS TLSMode = "StartTLS"
	// ImplicitTLS speaks TLS from the first byte (usually port 465).
	ImplicitTLS TLSMode = "TLS"
	// NoTLS sends in clear text; only for a relay on a trusted network.
	NoTLS TLSMode = "None"
)

// Mailer sends notifications by SMTP, one message per recipient, so no
// recipient sees the others' addresses and each can be retried alone.
type Mailer struct {
	// Address is host:port of the mail server.
	Address string
	// From is the sender, e.g. "Private apps <privateapps@example.com>".
	From string
	TLS  TLSMode
	// Username and Password, when set, authenticate with AUTH PLAIN, which
	// Go sends only over TLS (or to localhost).
	Username, Password string
	// RootCAs verifies the server; nil means the system pool.
	RootCAs *x509.CertPool
	// Timeout bounds one whole session; a slow server fails instead of
	// holding a reconcile.
	Timeout time.Duration
	// HelloName is sent in EHLO; "localhost" when empty.
	HelloName string
}

// Send delivers n to each recipient and returns the error of each recipient
// that was not served, by user name.
func (m *Mailer) Send(ctx context.Context, now time.Time, n Notification, to []Recipient) map[string]error {
	failed := map[string]error{}
	if len(to) == 0 {
		return failed
	}
	fail := func(err error) map[string]error {
		for _, r := range to {
			if failed[r.User] == nil {
				failed[r.User] = err
			}
		}
		return failed
	}
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return fail(fmt.Errorf("smtp from %q is not an email address: %w", m.From, err))
	}
	c, err := m.dial(ctx)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	served := map[string]bool{}
	for _, r := range to {
		if err := m.sendOne(c, now, from, n, r); err != nil {
			failed[r.User] = err
			var netErr net.Error
			if errors.As(err, &netErr) {
				// The connection is gone; the others fail the same way.
				break
			}
			_ = c.Reset()
			continue
		}
		served[r.User] = true
	}
	for _, r := range to {
		if !served[r.User] && failed[r.User] == nil {
			failed[r.User] = errors.New("smtp: connection lost before this recipient was served")
		}
	}
	_ = c.Quit()
	return failed
}

func (m *Mailer) dial(ctx context.Context) (*smtp.Client, error) {
	host, _, err := net.SplitHostPort(m.Address)
	if err != nil {
		return nil, fmt.Errorf("smtp address %q: %w (use host:port)", m.Address, err)
	}
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tlsConfig := &tls.Config{ServerName: host, RootCAs: m.RootCAs, MinVersion: tls.VersionTLS12}
	d := net.Dialer{Timeout: timeout}
	var conn net.Conn
	if m.TLS == ImplicitTLS {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: tlsConfig}).DialContext(ctx, "tcp", m.Address)
	} else {
		conn, err = d.DialContext(ctx, "tcp", m.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("smtp: cannot connect to %s: %w", m.Address, err)
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("smtp: %s: %w", m.Address, err)
	}
	hello := m.HelloName
	if hello == "" {
		hello = "localhost"
	}
	if err := c.Hello(hello); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("smtp: EHLO to %s: %w", m.Address, err)
	}
	if m.TLS == StartTLS || m.TLS == "" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			_ = c.Close()
			return nil, fmt.Errorf("smtp: %s does not offer STARTTLS; set smtp.tls to TLS for port 465, or None for a trusted relay", m.Address)
		}
		if err := c.StartTLS(tlsConfig); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("smtp: STARTTLS with %s: %w", m.Address, err)
		}
	}
	if m.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.Username, m.Password, host)); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("smtp: authentication as %q at %s failed: %w", m.Username, m.Address, err)
		}
	}
	return c, nil
}

func (m *Mailer) sendOne(c *smtp.Client, now time.Time, from *mail.Address, n Notification, r Recipient) error {
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(r.Email); err != nil {
		return fmt.Errorf("smtp RCPT TO %s: %w", r.Email, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(composeMail(now, m.From, n, r)); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: message to %s refused: %w", r.Email, err)
	}
	return nil
}

// composeMail renders the message for one recipient. Its Message-ID is
// derived from the notification id and the recipient, so a message sent
// again after a crash carries the same id and mail clients fold the two.
func composeMail(now time.Time, from string, n Notification, r Recipient) []byte {
	var b bytes.Buffer
	sum := sha256.Sum256([]byte(r.User))
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", from)
	header("To", r.Email)
	header("Subject", mime.QEncoding.Encode("utf-8", n.Subject()))
	header("Date", now.UTC().Format(time.RFC1123Z))
	header("Message-ID", fmt.Sprintf("<%s.%s@privateapps.dev>", n.ID, hex.EncodeToString(sum[:4])))
	header("X-PrivateApps-Notification-Id", n.ID)
	header("X-PrivateApps-Event", n.Event)
	header("Auto-Submitted", "auto-generated")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write(bytes.ReplaceAll([]byte(n.Body()), []byte("\n"), []byte("\r\n")))
	_ = qp.Close()
	return b.Bytes()
}
