package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Chat formats: the message format of an incoming webhook.
const (
	// ChatSlack is Slack's incoming-webhook message ("text" and Block Kit
	// "blocks"), which Mattermost, Rocket.Chat and others also take.
	ChatSlack = "Slack"
	// ChatTeams is a Microsoft Teams Workflows webhook's message: an
	// Adaptive Card in a "message" with one attachment.
	ChatTeams = "Teams"
)

// ChatRecipientPrefix starts the name under which a delivery to a chat
// webhook is listed in sentTo: "chat:<name>".
const ChatRecipientPrefix = "chat:"

// Chat posts notifications to one chat incoming webhook in its own message
// format. The webhook's URL is its credential: it never appears in an
// error, a status or an Event (only its scheme and host).
type Chat struct {
	// Name tells chats apart in sentTo and messages.
	Name string
	// Format is ChatSlack or ChatTeams.
	Format string
	URL    string
	Client *http.Client
}

// Recipient is the name in a delivery's sentTo.
func (c *Chat) Recipient() string { return ChatRecipientPrefix + c.Name }

// Send posts n. Any 2xx answer is success; anything else is retried.
func (c *Chat) Send(ctx context.Context, n Notification) error {
	var body any
	switch c.Format {
	case ChatSlack:
		body = SlackMessage(n)
	case ChatTeams:
		body = TeamsMessage(n)
	default:
		return fmt.Errorf("chat %s: format %q is neither %s nor %s", c.Name, c.Format, ChatSlack, ChatTeams)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return postJSON(ctx, c.Client, "chat "+c.Name, c.URL, b, nil)
}

// chatText is a notification for a chat: a title, what happened, and the
// command that acts on it, if one does.
func (n Notification) chatText() (title, text, command string) {
	title = strings.TrimPrefix(n.Subject(), "[privateapps] ")
	body, _, _ := strings.Cut(n.Body(), "\n--\n")
	var prose, code []string
	for line := range strings.SplitSeq(strings.TrimSpace(body), "\n") {
		if strings.HasPrefix(line, "  ") {
			code = append(code, strings.TrimPrefix(line, "  "))
		} else if line != "" {
			prose = append(prose, line)
		}
	}
	return title, strings.Join(prose, "\n"), strings.Join(code, "\n")
}

func (n Notification) chatFooter() string {
	return fmt.Sprintf("AppNotification %s/%s · notification %s", n.Source.Namespace, n.Source.Name, n.ID)
}

// slackEscape escapes what Slack's mrkdwn reads as markup.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// SlackMessage is n as a Slack incoming-webhook message: "text" for
// notifications and clients without blocks (Mattermost shows it), and
// blocks: a header, the text, the command as code, and where it came from.
func SlackMessage(n Notification) map[string]any {
	title, text, command := n.chatText()
	md := slackEscape.Replace(text)
	if command != "" {
		md += "\n```" + slackEscape.Replace(command) + "```"
	}
	blocks := []map[string]any{
		{"type": "header", "text": map[string]any{"type": "plain_text", "text": title}},
		{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": md}},
		{"type": "context", "elements": []map[string]any{{"type": "mrkdwn", "text": slackEscape.Replace(n.chatFooter())}}},
	}
	return map[string]any{"text": slackEscape.Replace(title) + "\n" + md, "blocks": blocks}
}

// TeamsMessage is n as a Microsoft Teams Workflows webhook message: an
// Adaptive Card (version 1.4) with the title, the text, the command in a
// monospace block, the app's facts, and where it came from.
func TeamsMessage(n Notification) map[string]any {
	title, text, command := n.chatText()
	body := []map[string]any{
		{"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true},
		{"type": "TextBlock", "text": text, "wrap": true},
	}
	if command != "" {
		body = append(body, map[string]any{"type": "TextBlock", "text": command, "fontType": "Monospace", "wrap": true})
	}
	facts := []map[string]string{{"title": "Namespace", "value": n.App.Namespace}, {"title": "App", "value": n.App.Name}, {"title": "Event", "value": n.Event}}
	if n.App.InstalledBy != "" {
		facts = append(facts, map[string]string{"title": "Installed by", "value": n.App.InstalledBy})
	}
	body = append(body,
		map[string]any{"type": "FactSet", "facts": facts},
		map[string]any{"type": "TextBlock", "text": n.chatFooter(), "isSubtle": true, "size": "Small", "wrap": true})
	return map[string]any{
		"type": "message",
		"attachments": []map[string]any{{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content": map[string]any{
				"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
				"type":    "AdaptiveCard",
				"version": "1.4",
				"body":    body,
			},
		}},
	}
}
