package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Webhook headers. The signature is over "<timestamp>.<body>", so a
// receiver that checks it and the timestamp's age refuses both forged and
// replayed requests.
const (
	HeaderDelivery  = "X-PrivateApps-Delivery"
	HeaderEvent     = "X-PrivateApps-Event"
	HeaderTimestamp = "X-PrivateApps-Timestamp"
	HeaderSignature = "X-PrivateApps-Signature"
)

// Webhook posts notifications as JSON to one URL.
type Webhook struct {
	URL string
	// Secret keys the HMAC-SHA256 signature.
	Secret []byte
	// Client sends the request; its Timeout bounds a slow receiver.
	Client *http.Client
}

// Payload is the JSON body of a webhook delivery.
type Payload struct {
	Notification
	// Recipients are the users the notification was addressed to.
	Recipients []Recipient `json:"recipients"`
}

// Send posts n. Any 2xx answer is success; anything else is retried.
func (w *Webhook) Send(ctx context.Context, now time.Time, n Notification, to []Recipient) error {
	body, err := json.Marshal(Payload{Notification: n, Recipients: to})
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	h := http.Header{}
	h.Set(HeaderDelivery, n.ID)
	h.Set(HeaderEvent, n.Event)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign(w.Secret, ts, body))
	return postJSON(ctx, w.Client, "webhook", w.URL, body, h)
}

// postJSON posts a JSON body with the given headers to rawURL. Any 2xx
// answer is success. Errors start with what and name only the URL's scheme
// and host: chat and incident webhooks carry their secret in the path or
// the query, and errors go into status and Events.
func postJSON(ctx context.Context, client *http.Client, what, rawURL string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: the URL does not parse (check its scheme and host)", what)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "privateapp-operator")
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		// A *url.Error names the whole URL, which often holds a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %w", what, where(rawURL), err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s answered %s: %s", what, where(rawURL), resp.Status, strings.TrimSpace(string(snippet)))
	}
	return nil
}

// where is a URL's scheme and host only.
func where(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "(the configured URL)"
	}
	return u.Scheme + "://" + u.Host
}

// Sign is the signature header value: "v1=" and the hex HMAC-SHA256 of
// "<timestamp>.<body>".
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify is what a receiver runs: the signature must match and the
// timestamp must be within tolerance of now.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("timestamp is not unix seconds")
	}
	if age := now.Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("timestamp is %s away from now, more than %s", age.Round(time.Second), tolerance)
	}
	if !hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature)) {
		return errors.New("signature does not match")
	}
	return nil
}
