package tokenservice

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/privateapps-dev/privateapp-operator/api/openapi"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// The OAuth 2.0 endpoints: token introspection (RFC 7662) for resource
// servers that validate opaque Bearer tokens, and the authorization server
// metadata (RFC 8414) that lets them find it.
const (
	PathIntrospect    = "/oauth2/introspect"
	PathOAuthMetadata = "/.well-known/oauth-authorization-server"
)

// minClientSecret is the shortest client secret a clients file may hold.
const minClientSecret = 16

// IntrospectionClient is a resource server that may introspect tokens. It
// authenticates with its secret (HTTP Basic, or client_id and
// client_secret in the form) or, when Certificate is set, with a client
// certificate that the listener verified (--token-review-client-ca) whose
// common name is its ID.
type IntrospectionClient struct {
	ID          string `json:"id"`
	Secret      string `json:"secret,omitempty"`
	Certificate bool   `json:"certificate,omitempty"`
	// Catalogs, when set, limit what the client learns to the scopes these
	// APICatalogs offer: the answer's scope holds only those, and a token
	// whose app holds none of them is inactive for this client.
	Catalogs []string `json:"catalogs,omitempty"`

	digest [sha256.Size]byte
}

// clientsFile is the file --introspection-clients-file names.
type clientsFile struct {
	Clients []IntrospectionClient `json:"clients"`
}

// ParseIntrospectionClients reads a clients file's content, reporting
// every problem at once.
func ParseIntrospectionClients(b []byte) (map[string]*IntrospectionClient, error) {
	var f clientsFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("%w (fields: clients[].id, secret, certificate, catalogs)", err)
	}
	out := make(map[string]*IntrospectionClient, len(f.Clients))
	var probs []string
	for i := range f.Clients {
		c := &f.Clients[i]
		switch {
		case c.ID == "" || !clientIDChars(c.ID):
			probs = append(probs, fmt.Sprintf("clients[%d].id %q must be 1-128 printable ASCII characters without ':'", i, truncate(c.ID, 40)))
			continue
		case out[c.ID] != nil:
			probs = append(probs, fmt.Sprintf("clients[%d].id %q is declared twice", i, c.ID))
		case c.Secret == "" && !c.Certificate:
			probs = append(probs, fmt.Sprintf("client %q has neither a secret nor certificate: true, so it cannot authenticate", c.ID))
		case c.Secret != "" && len(c.Secret) < minClientSecret:
			probs = append(probs, fmt.Sprintf("client %q has a secret of %d characters; use at least %d (openssl rand -hex 32)", c.ID, len(c.Secret), minClientSecret))
		}
		c.digest = sha256.Sum256([]byte(c.Secret))
		out[c.ID] = c
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(probs, "; "))
	}
	return out, nil
}

// clientIDChars reports whether id may be a client_id: RFC 6749's VSCHAR
// without ':', which HTTP Basic cannot carry in a user name.
func clientIDChars(id string) bool {
	if len(id) > 128 {
		return false
	}
	for i := range len(id) {
		if c := id[i]; c < 0x20 || c > 0x7e || c == ':' {
			return false
		}
	}
	return true
}

// IntrospectionClients are the clients of --introspection-clients-file,
// read again when the file changes (a mounted Secret is updated in place).
// A file that no longer parses keeps the clients last read, and says why in
// the log, so that a typo does not lock every resource server out; at start
// it is an error.
type IntrospectionClients struct {
	path string
	log  func(err error)

	mu      sync.Mutex
	checked time.Time
	stamp   fileStamp
	clients map[string]*IntrospectionClient
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// LoadIntrospectionClients reads path; log is told of a later change that
// does not parse.
func LoadIntrospectionClients(path string, log func(error)) (*IntrospectionClients, error) {
	clients, stamp, err := readClients(path)
	if err != nil {
		return nil, fmt.Errorf("introspection clients file %s: %w", path, err)
	}
	return &IntrospectionClients{path: path, log: log, clients: clients, stamp: stamp, checked: time.Now()}, nil
}

// readClients reads and parses the clients file, with the stamp of what
// it read.
func readClients(path string) (map[string]*IntrospectionClient, fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fileStamp{}, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fileStamp{}, err
	}
	clients, err := ParseIntrospectionClients(b)
	return clients, fileStamp{st.ModTime(), st.Size()}, err
}

// current is the clients in force, looking at the file at most once a
// second.
func (c *IntrospectionClients) current() map[string]*IntrospectionClient {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= time.Second {
		c.checked = now
		if st, err := os.Stat(c.path); err == nil && (fileStamp{st.ModTime(), st.Size()}) != c.stamp {
			clients, stamp, err := readClients(c.path)
			switch {
			case err == nil:
				c.clients, c.stamp = clients, stamp
			case c.log != nil:
				c.log(fmt.Errorf("introspection clients file %s changed and cannot be read; the clients read before stay in force: %w", c.path, err))
			}
		}
	}
	return c.clients
}

// authenticate finds the client a request comes from: HTTP Basic
// (client_secret_basic, whose parts RFC 6749 §2.3.1 form-encodes), the
// form's client_id and client_secret (client_secret_post), or a verified
// client certificate (tls_client_auth). It returns the client, or why
// there is none.
func (c *IntrospectionClients) authenticate(r *http.Request) (*IntrospectionClient, string) {
	clients := c.current()
	if len(clients) == 0 {
		return nil, "no introspection clients are configured: the platform team declares them in --introspection-clients-file (docs/token-service.md#oauth-20-resource-servers)"
	}
	id, secret, basic := r.BasicAuth()
	formID, formSecret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	switch {
	case basic && formSecret != "":
		return nil, "the request authenticates twice (HTTP Basic and client_secret); use one method"
	case basic:
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, "the HTTP Basic credentials are not form-encoded as RFC 6749 §2.3.1 asks"
		}
	case formSecret != "":
		id, secret = formID, formSecret
	default:
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
			if cl := clients[cn]; cl != nil && cl.Certificate {
				return cl, ""
			}
			return nil, fmt.Sprintf("the client certificate's common name %q is not a client with certificate: true in the introspection clients file", truncate(cn, 64))
		}
		return nil, "authenticate the client: HTTP Basic with its client_id and secret, client_id and client_secret in the form, or a client certificate"
	}
	cl := clients[id]
	d := sha256.Sum256([]byte(secret))
	// Compare even for an unknown id, so timing tells nothing of which ids exist.
	want := d
	if cl != nil && cl.Secret != "" {
		want = cl.digest
	}
	if subtle.ConstantTimeCompare(d[:], want[:]) != 1 || cl == nil || cl.Secret == "" {
		return nil, "the client_id or its secret is wrong"
	}
	return cl, ""
}

// Introspection is the answer of the introspection endpoint (RFC 7662
// §2.2). An inactive token's answer is {"active": false} and nothing else.
type Introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Username  string `json:"username,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Aud       string `json:"aud,omitempty"`
	Iss       string `json:"iss,omitempty"`
	// The project's own fields: the app, and whether the token is the
	// previous one, kept working by a grace period.
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Previous  bool   `json:"previous,omitempty"`
}

// oauthError is an OAuth 2.0 error answer (RFC 6749 §5.2).
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// introspect answers RFC 7662 introspection. The caller must be a declared
// client; a caller that is not is answered 401 and counted against the
// introspection limit of its source, so the endpoint is no oracle for
// guessing tokens or client secrets. Introspecting is not a call of the app:
// it takes nothing from its limits and is not counted in its usage; the
// call log keeps it as an INTROSPECT.
func (s *Service) introspect(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "send the form as application/x-www-form-urlencoded: token=<token>"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "the form does not parse; send token=<token>, form-encoded"})
		return
	}
	if r.URL.RawQuery != "" {
		// A token in a URL ends up in access logs: refuse it before anything.
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "send the parameters in the body, not in the URL's query"})
		return
	}
	cl, problem := s.OAuthClients.authenticate(r)
	if cl == nil {
		if !s.introspectionAllowed(w, r) {
			return
		}
		refusals.WithLabelValues("introspection_client").Inc()
		w.Header().Set("WWW-Authenticate", `Basic realm="privateapps"`)
		writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_client", problem})
		return
	}
	text := r.PostForm.Get("token")
	if text == "" {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "token is required: send token=<token>, form-encoded"})
		return
	}
	now := s.Clock.Now()
	v := s.validate(text, now)
	ans := s.introspection(v, cl, r)
	s.logIntrospection(v, ans.Active, now)
	writeJSON(w, http.StatusOK, ans)
}

// introspection is what client cl learns of a validated token.
func (s *Service) introspection(v verdict, cl *IntrospectionClient, r *http.Request) Introspection {
	if v.status != http.StatusOK {
		return Introspection{}
	}
	app, cat := v.match.App, s.catalogs()
	scopes := app.Scopes
	if cat.Enabled() {
		scopes = offered(cat, scopes) // as /v1/check: a scope no catalog offers is not granted
	}
	if len(cl.Catalogs) > 0 {
		scopes = slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool {
			return !slices.ContainsFunc(cl.Catalogs, func(c string) bool { return cat.OffersIn(c, sc) })
		})
	}
	if len(cl.Catalogs) > 0 && len(scopes) == 0 {
		return Introspection{}
	}
	ans := Introspection{
		Active: true, Scope: strings.Join(scopes, " "), ClientID: app.Namespace + "/" + app.Name,
		Username: app.InstalledBy, TokenType: "Bearer", Sub: "privateapp:" + app.Namespace + ":" + app.Name,
		Aud: cl.ID, Iss: s.issuer(r), Namespace: app.Namespace, Name: app.Name, Previous: v.match.Previous,
	}
	if exp := v.match.ExpiresAt(); exp != nil {
		ans.Exp = exp.Unix()
	}
	if iat := v.match.IssuedAt(); iat != nil {
		ans.Iat = iat.Unix()
	}
	return ans
}

// logIntrospection puts an introspection of a known app's token into the
// call log: 200 when the token was active, 401 with the reason when not.
func (s *Service) logIntrospection(v verdict, active bool, at time.Time) {
	if s.Calls == nil || v.match.App == nil {
		return
	}
	e := calllog.Entry{
		ID: newCallID(), Time: at, Namespace: v.match.App.Namespace, App: v.match.App.Name,
		Method: calllog.MethodIntrospect, Path: PathIntrospect, Code: http.StatusOK, DecidedBy: calllog.DecidedByTokenService,
		Reason: calllog.ReasonAllowed, Source: calllog.SourceGateway, Final: true,
	}
	switch {
	case v.status != http.StatusOK:
		e.Code, e.Reason = http.StatusUnauthorized, v.reason
	case !active:
		e.Code, e.Reason = http.StatusUnauthorized, "client_catalogs"
	}
	s.Calls.Add(e)
}

// OAuthMetadata is the authorization server metadata of RFC 8414 §2.
type OAuthMetadata struct {
	Issuer                   string   `json:"issuer"`
	IntrospectionEndpoint    string   `json:"introspection_endpoint"`
	IntrospectionAuthMethods []string `json:"introspection_endpoint_auth_methods_supported"`
	ResponseTypesSupported   []string `json:"response_types_supported"`
	GrantTypesSupported      []string `json:"grant_types_supported"`
	ScopesSupported          []string `json:"scopes_supported,omitempty"`
	ServiceDocumentation     string   `json:"service_documentation,omitempty"`
}

// metadata answers RFC 8414's discovery document. Private-app tokens are
// issued by the operator, not by an OAuth 2.0 flow, so the server offers no
// authorization or token endpoint and no response or grant type: only
// introspection, and the scopes the catalogs in force offer.
func (s *Service) metadata(w http.ResponseWriter, r *http.Request) {
	iss := s.issuer(r)
	if iss == "" {
		writeError(w, http.StatusNotFound, categoryNotFound, "the token service does not know its issuer URL: set --token-service-issuer (the chart's tokenService.issuer) to the https URL resource servers reach it by")
		return
	}
	w.Header().Set("Cache-Control", "max-age=300")
	writeJSON(w, http.StatusOK, OAuthMetadata{
		Issuer:                   iss,
		IntrospectionEndpoint:    iss + PathIntrospect,
		IntrospectionAuthMethods: []string{"client_secret_basic", "client_secret_post", "tls_client_auth"},
		ResponseTypesSupported:   []string{},
		GrantTypesSupported:      []string{},
		ScopesSupported:          s.catalogs().OfferedScopes(),
		ServiceDocumentation:     "https://github.com/privateapps-dev/privateapp-operator/blob/main/docs/token-service.md#oauth-20-resource-servers",
	})
}

// issuer is the issuer URL: --token-service-issuer, or else the URL this
// request reached the token service by, when its Host is a plain host name
// or address (a name a client made up is answered no issuer at all).
func (s *Service) issuer(r *http.Request) string {
	if s.Issuer != "" {
		return s.Issuer
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if net.ParseIP(strings.Trim(host, "[]")) == nil && len(validation.IsDNS1123Subdomain(strings.ToLower(host))) > 0 {
		return ""
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + strings.ToLower(r.Host)
}

// The OpenAPI 3 document of these endpoints (api/openapi).
const (
	PathOpenAPIJSON = "/openapi.json"
	PathOpenAPIYAML = "/openapi.yaml"
)

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=300")
	if r.URL.Path == PathOpenAPIYAML {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openapi.TokenServiceYAML)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapi.TokenServiceJSON)
}
