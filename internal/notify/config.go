package notify

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is the operator's notification configuration file
// (--notifications-config). Credentials are read from files, so they come
// from a mounted Secret and never sit in the file or in flags.
//
//	smtp:
//	  address: smtp.example.com:587
//	  from: Private apps <privateapps@example.com>
//	  tls: StartTLS          # StartTLS (default), TLS or None
//	  usernameFile: /etc/privateapp-operator/smtp/username
//	  passwordFile: /etc/privateapp-operator/smtp/password
//	  caFile: /etc/privateapp-operator/smtp/ca.crt   # optional
//	  timeout: 30s
//	webhook:
//	  url: https://hooks.example.com/privateapps
//	  secretFile: /etc/privateapp-operator/webhook/secret
//	  timeout: 10s
//	directory:
//	  namespace: privateapp-system   # default: the operator's namespace
//	  name: privateapp-operator-directory
type Config struct {
	SMTP    *SMTPConfig    `json:"smtp,omitempty"`
	Webhook *WebhookConfig `json:"webhook,omitempty"`
	// Chat are chat incoming webhooks (Slack, Mattermost, Teams, ...).
	Chat      []ChatConfig     `json:"chat,omitempty"`
	Directory *DirectoryConfig `json:"directory,omitempty"`
}

// ChatConfig is one chat incoming webhook.
type ChatConfig struct {
	// Name tells it apart in a delivery's sentTo ("chat:<name>"); default
	// the format in lower case.
	Name string `json:"name,omitempty"`
	// Format is Slack (also for Mattermost, Rocket.Chat and others that
	// take Slack's messages) or Teams (a Workflows webhook).
	Format string `json:"format"`
	// URLFile holds the webhook's URL, which is its credential.
	URLFile string   `json:"urlFile"`
	Timeout Duration `json:"timeout,omitempty"`
}

// SMTPConfig is the smtp section of Config.
type SMTPConfig struct {
	Address      string   `json:"address"`
	From         string   `json:"from"`
	TLS          TLSMode  `json:"tls,omitempty"`
	UsernameFile string   `json:"usernameFile,omitempty"`
	PasswordFile string   `json:"passwordFile,omitempty"`
	CAFile       string   `json:"caFile,omitempty"`
	Timeout      Duration `json:"timeout,omitempty"`
}

// WebhookConfig is the webhook section of Config.
type WebhookConfig struct {
	URL        string   `json:"url"`
	SecretFile string   `json:"secretFile"`
	Timeout    Duration `json:"timeout,omitempty"`
}

// DirectoryConfig says where the cluster-wide directory ConfigMap is.
type DirectoryConfig struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
}

// Duration reads "30s"-style durations.
type Duration struct{ time.Duration }

// UnmarshalJSON parses a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 30s", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// DefaultDirectoryName is the cluster-wide directory ConfigMap's name when
// the configuration does not give one.
const DefaultDirectoryName = "privateapp-operator-directory"

// NamespaceDirectoryName is the ConfigMap a namespace may create to use its
// own directory instead of the cluster-wide one.
const NamespaceDirectoryName = "privateapps-directory"

// Channels are the configured ways out.
type Channels struct {
	Mailer  *Mailer
	Webhook *Webhook
	Chats   []*Chat
	// DirectoryNamespace and DirectoryName locate the cluster-wide
	// directory ConfigMap.
	DirectoryNamespace, DirectoryName string
}

// LoadConfig reads the configuration file and the credential files it
// names. operatorNamespace is the default directory namespace.
func LoadConfig(path, operatorNamespace string) (*Channels, error) {
	ch := &Channels{DirectoryNamespace: operatorNamespace, DirectoryName: DefaultDirectoryName}
	if path == "" {
		return ch, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("notifications config: %w", err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("notifications config %s: %w (expected keys: smtp, webhook, chat, directory)", path, err)
	}
	if c.Directory != nil {
		if c.Directory.Namespace != "" {
			ch.DirectoryNamespace = c.Directory.Namespace
		}
		if c.Directory.Name != "" {
			ch.DirectoryName = c.Directory.Name
		}
	}
	if c.SMTP != nil {
		if ch.Mailer, err = c.SMTP.mailer(); err != nil {
			return nil, fmt.Errorf("notifications config %s: %w", path, err)
		}
	}
	if c.Webhook != nil {
		if ch.Webhook, err = c.Webhook.webhook(); err != nil {
			return nil, fmt.Errorf("notifications config %s: %w", path, err)
		}
	}
	for i := range c.Chat {
		chat, err := c.Chat[i].chat(i)
		if err != nil {
			return nil, fmt.Errorf("notifications config %s: %w", path, err)
		}
		for _, other := range ch.Chats {
			if other.Name == chat.Name {
				return nil, fmt.Errorf("notifications config %s: two chats are named %q; give each a name", path, chat.Name)
			}
		}
		ch.Chats = append(ch.Chats, chat)
	}
	return ch, nil
}

func (c *SMTPConfig) mailer() (*Mailer, error) {
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return nil, fmt.Errorf("smtp.address %q must be host:port, e.g. smtp.example.com:587", c.Address)
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return nil, fmt.Errorf("smtp.from %q must be an address like \"Private apps <privateapps@example.com>\"", c.From)
	}
	m := &Mailer{Address: c.Address, From: c.From, TLS: c.TLS, Timeout: c.Timeout.Duration}
	switch c.TLS {
	case "":
		m.TLS = StartTLS
	case StartTLS, ImplicitTLS, NoTLS:
	default:
		return nil, fmt.Errorf("smtp.tls %q must be StartTLS, TLS or None", c.TLS)
	}
	if (c.UsernameFile == "") != (c.PasswordFile == "") {
		return nil, fmt.Errorf("smtp.usernameFile and smtp.passwordFile go together: set both or neither")
	}
	var err error
	if c.UsernameFile != "" {
		if m.Username, err = readSecretFile("smtp.usernameFile", c.UsernameFile); err != nil {
			return nil, err
		}
		if m.Password, err = readSecretFile("smtp.passwordFile", c.PasswordFile); err != nil {
			return nil, err
		}
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("smtp.caFile: %w", err)
		}
		m.RootCAs = x509.NewCertPool()
		if !m.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("smtp.caFile %s holds no PEM certificate", c.CAFile)
		}
	}
	return m, nil
}

func (c *WebhookConfig) webhook() (*Webhook, error) {
	if !strings.HasPrefix(c.URL, "https://") && !strings.HasPrefix(c.URL, "http://") {
		return nil, fmt.Errorf("webhook.url %q must be an http(s) URL", c.URL)
	}
	if c.SecretFile == "" {
		return nil, fmt.Errorf("webhook.secretFile is required: the file with the HMAC key receivers verify signatures with")
	}
	secret, err := readSecretFile("webhook.secretFile", c.SecretFile)
	if err != nil {
		return nil, err
	}
	if len(secret) < 16 {
		return nil, fmt.Errorf("webhook.secretFile %s: the key has %d bytes; use at least 16 (e.g. openssl rand -hex 32)", c.SecretFile, len(secret))
	}
	timeout := c.Timeout.Duration
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Webhook{URL: c.URL, Secret: []byte(secret), Client: &http.Client{Timeout: timeout}}, nil
}

var chatName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (c *ChatConfig) chat(i int) (*Chat, error) {
	field := fmt.Sprintf("chat[%d]", i)
	if c.Format != ChatSlack && c.Format != ChatTeams {
		return nil, fmt.Errorf("%s.format %q must be %s (also Mattermost and others that take Slack's messages) or %s", field, c.Format, ChatSlack, ChatTeams)
	}
	name := c.Name
	if name == "" {
		name = strings.ToLower(c.Format)
	}
	if !chatName.MatchString(name) {
		return nil, fmt.Errorf("%s.name %q must be lower-case letters, digits and dashes, at most 63", field, name)
	}
	if c.URLFile == "" {
		return nil, fmt.Errorf("%s.urlFile is required: the file with the webhook's URL (the URL is its credential)", field)
	}
	raw, err := readSecretFile(field+".urlFile", c.URLFile)
	if err != nil {
		return nil, err
	}
	// The URL is never echoed: it holds the webhook's secret.
	if u, err := url.Parse(strings.TrimSpace(raw)); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%s.urlFile %s does not hold an http(s) URL", field, c.URLFile)
	}
	timeout := c.Timeout.Duration
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Chat{Name: name, Format: c.Format, URL: strings.TrimSpace(raw), Client: &http.Client{Timeout: timeout}}, nil
}

// readSecretFile reads a credential, trimming the trailing newline most
// tools leave. Its content never goes into an error.
func readSecretFile(field, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", field, path)
	}
	return s, nil
}
