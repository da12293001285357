package notifytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/privateapps-dev/privateapp-operator/internal/notify"
)

// ChatReceiver is a chat incoming webhook that checks each message against
// the documented shape of its format (docs/appnotifications.md): Slack's
// text and Block Kit blocks, or a Teams Workflows message with one Adaptive
// Card. It answers as the service does: Slack 200 "ok" and 400
// "invalid_payload", Teams 202.
type ChatReceiver struct {
	*httptest.Server
	Format string

	mu       sync.Mutex
	texts    []string
	bad      []string
	failNext int
}

// StartChatReceiver starts a receiver of format (notify.ChatSlack or
// notify.ChatTeams) on a loopback port; its URL has a secret-looking path,
// as the services' URLs do.
func StartChatReceiver(format string) *ChatReceiver {
	r := &ChatReceiver{Format: format}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

// WebhookURL is the URL to configure, with its secret path.
func (r *ChatReceiver) WebhookURL() string { return r.URL + "/services/T0001/B0002/" + SecretPath }

// SecretPath is the credential part of a receiver's URL; it must never
// show in an error, a status or an Event.
const SecretPath = "sEcReTpAtH0123456789abcd"

func (r *ChatReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && req.URL.Path != "/services/T0001/B0002/"+SecretPath {
		err = fmt.Errorf("path %s is not the webhook's", req.URL.Path)
	}
	if err == nil && req.Header.Get("Content-Type") != "application/json" {
		err = fmt.Errorf("content type %q, want application/json", req.Header.Get("Content-Type"))
	}
	var text string
	if err == nil {
		if r.Format == notify.ChatTeams {
			text, err = checkTeams(body)
		} else {
			text, err = checkSlack(body)
		}
	}
	if err != nil {
		r.bad = append(r.bad, err.Error())
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	if r.failNext > 0 {
		r.failNext--
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	r.texts = append(r.texts, text)
	if r.Format == notify.ChatTeams {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	fmt.Fprint(w, "ok")
}

// checkSlack checks an incoming-webhook message: a non-empty text, and
// blocks of the kinds used (header with plain_text of at most 150
// characters, section with mrkdwn of at most 3000, context with at most 10
// elements). It returns the text of the blocks.
func checkSlack(body []byte) (string, error) {
	var m struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Elements []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", err
	}
	if m.Text == "" {
		return "", fmt.Errorf("no text: Slack needs it for notifications")
	}
	all := ""
	for i, b := range m.Blocks {
		switch b.Type {
		case "header":
			if b.Text == nil || b.Text.Type != "plain_text" || b.Text.Text == "" || len([]rune(b.Text.Text)) > 150 {
				return "", fmt.Errorf("block %d: a header needs plain_text of 1 to 150 characters", i)
			}
			all += b.Text.Text + "\n"
		case "section":
			if b.Text == nil || b.Text.Type != "mrkdwn" || b.Text.Text == "" || len([]rune(b.Text.Text)) > 3000 {
				return "", fmt.Errorf("block %d: a section needs mrkdwn text of 1 to 3000 characters", i)
			}
			all += b.Text.Text + "\n"
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > 10 {
				return "", fmt.Errorf("block %d: a context needs 1 to 10 elements", i)
			}
			for _, e := range b.Elements {
				all += e.Text + "\n"
			}
		default:
			return "", fmt.Errorf("block %d: unexpected type %q", i, b.Type)
		}
	}
	return all, nil
}

// checkTeams checks a Workflows message: type message, one attachment of
// an Adaptive Card with a version and a body of TextBlocks and FactSets.
func checkTeams(body []byte) (string, error) {
	var m struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string `json:"contentType"`
			Content     struct {
				Schema  string `json:"$schema"`
				Type    string `json:"type"`
				Version string `json:"version"`
				Body    []struct {
					Type  string `json:"type"`
					Text  string `json:"text"`
					Facts []struct {
						Title string `json:"title"`
						Value string `json:"value"`
					} `json:"facts"`
				} `json:"body"`
			} `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", err
	}
	if m.Type != "message" || len(m.Attachments) != 1 {
		return "", fmt.Errorf("want a message with one attachment, got type %q with %d", m.Type, len(m.Attachments))
	}
	a := m.Attachments[0]
	if a.ContentType != "application/vnd.microsoft.card.adaptive" || a.Content.Type != "AdaptiveCard" || a.Content.Version == "" || a.Content.Schema == "" {
		return "", fmt.Errorf("the attachment is not an Adaptive Card with a schema and version")
	}
	all := ""
	for i, e := range a.Content.Body {
		switch e.Type {
		case "TextBlock":
			if e.Text == "" {
				return "", fmt.Errorf("element %d: an empty TextBlock", i)
			}
			all += e.Text + "\n"
		case "FactSet":
			for _, f := range e.Facts {
				if f.Title == "" || f.Value == "" {
					return "", fmt.Errorf("element %d: a fact without title or value", i)
				}
				all += f.Title + ": " + f.Value + "\n"
			}
		default:
			return "", fmt.Errorf("element %d: unexpected type %q", i, e.Type)
		}
	}
	return all, nil
}

// Texts are the accepted messages' texts so far.
func (r *ChatReceiver) Texts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.texts...)
}

// Refused lists why malformed messages were refused.
func (r *ChatReceiver) Refused() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// FailNext makes the next n well-formed messages answer 503.
func (r *ChatReceiver) FailNext(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext = n
}
