// Package tokenservice is the HTTP service that validates app tokens for
// gateways, workloads and the Kubernetes API server. It knows tokens only by
// the digests in PrivateApp status, so it needs no access to Secrets, and it
// never compares token text.
package tokenservice

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// App is what the token service knows about one app: a snapshot, replaced
// whole on every change, so readers never see it half-updated.
type App struct {
	Namespace, Name, UID, InstalledBy string
	// HubID, AppID and UserID are HubSpot's numbers of the account, the
	// app and its installer (status); zero until the controller gives them.
	HubID, AppID, UserID int64
	// Scopes are spec.scopes, sorted: an edit applies at once.
	Scopes    []string
	Suspended bool
	// key ("namespace/name") and identity (the values of the identity
	// headers of an allowed check) are made once per status change rather
	// than per request.
	key      string
	identity [5]string
	// CurrentExpiresAt is when the current token expires, if it does.
	CurrentExpiresAt *time.Time
	// PreviousExpiresAt is when the previous token expires, if there is one.
	PreviousExpiresAt *time.Time
	// CurrentIssuedAt and PreviousIssuedAt are when the tokens were issued,
	// where status records it.
	CurrentIssuedAt, PreviousIssuedAt *time.Time
	// reviewJSON is the TokenReview answer that authenticates the app for
	// no particular audience, made at its first review.
	reviewJSON atomic.Pointer[[]byte]
}

// review is the TokenReview answer that authenticates the app.
func (a *App) review() []byte {
	if b := a.reviewJSON.Load(); b != nil {
		return *b
	}
	b := reviewOf(a, nil)
	a.reviewJSON.Store(&b)
	return b
}

// Key is the app's namespace and name.
func (a *App) Key() types.NamespacedName {
	return types.NamespacedName{Namespace: a.Namespace, Name: a.Name}
}

// HasScope reports whether the app holds scope.
func (a *App) HasScope(scope string) bool {
	_, ok := slices.BinarySearch(a.Scopes, scope)
	return ok
}

// appKey is an app's key in the rate limiter: "namespace/name".
func appKey(namespace, name string) string { return namespace + "/" + name }

// Match is a token found in the index.
type Match struct {
	App *App
	// Previous is true for the token kept valid by a grace period.
	Previous bool
}

// ExpiresAt is when the matched token stops working, if it does.
func (m Match) ExpiresAt() *time.Time {
	if m.Previous {
		return m.App.PreviousExpiresAt
	}
	return m.App.CurrentExpiresAt
}

// IssuedAt is when the matched token was issued, where known.
func (m Match) IssuedAt() *time.Time {
	if m.Previous {
		return m.App.PreviousIssuedAt
	}
	return m.App.CurrentIssuedAt
}

// Expired reports whether the matched token has stopped working at now. The
// token service checks this on every request, so an expiry holds even when
// the operator is down.
func (m Match) Expired(now time.Time) bool {
	exp := m.ExpiresAt()
	return exp != nil && !now.Before(*exp)
}

// Index finds an app by the digest of a token.
type Index struct {
	mu       sync.RWMutex
	byDigest map[token.Digest]Match
	digests  map[types.NamespacedName][]token.Digest
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byDigest: map[token.Digest]Match{}, digests: map[types.NamespacedName][]token.Digest{}}
}

// Lookup finds the token with digest d. It does not allocate.
func (ix *Index) Lookup(d token.Digest) (Match, bool) {
	ix.mu.RLock()
	m, ok := ix.byDigest[d]
	ix.mu.RUnlock()
	return m, ok
}

// Len is the number of tokens indexed.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byDigest)
}

// Set indexes the tokens an app's status names: the current one and a
// previous one in its grace period. A pending token is not valid and is not
// indexed; nor is any token of an app being deleted.
func (ix *Index) Set(pa *v1alpha1.PrivateApp) {
	key := types.NamespacedName{Namespace: pa.Namespace, Name: pa.Name}
	t := pa.Status.Token
	if t == nil || !pa.DeletionTimestamp.IsZero() {
		ix.Remove(key)
		return
	}
	app := &App{
		Namespace: pa.Namespace, Name: pa.Name, UID: string(pa.UID), InstalledBy: pa.Status.InstalledBy,
		HubID: pa.Status.HubID, AppID: pa.Status.AppID, UserID: pa.Status.InstalledByUserID,
		Scopes:    slices.Sorted(slices.Values(pa.Spec.Scopes)),
		Suspended: pa.Spec.Suspend,
		key:       appKey(pa.Namespace, pa.Name),
	}
	app.identity = [5]string{app.Namespace, app.Name, app.UID, app.InstalledBy, strings.Join(app.Scopes, " ")}
	var ds []token.Digest
	cur, err := token.ParseDigest(t.Digest)
	hasCur := err == nil
	if hasCur {
		ds = append(ds, cur)
		if !t.IssuedAt.IsZero() {
			iat := t.IssuedAt.Time
			app.CurrentIssuedAt = &iat
		}
		if t.ExpiresAt != nil {
			exp := t.ExpiresAt.Time
			app.CurrentExpiresAt = &exp
		}
	}
	var prev token.Digest
	hasPrev := false
	if p := t.Previous; p != nil {
		if prev, err = token.ParseDigest(p.Digest); err == nil {
			hasPrev = true
			exp := p.ExpiresAt.Time
			app.PreviousExpiresAt = &exp
			if p.IssuedAt != nil {
				iat := p.IssuedAt.Time
				app.PreviousIssuedAt = &iat
			}
			ds = append(ds, prev)
		}
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(key)
	if len(ds) == 0 {
		return
	}
	if hasCur {
		ix.byDigest[cur] = Match{App: app}
	}
	if hasPrev {
		ix.byDigest[prev] = Match{App: app, Previous: true}
	}
	ix.digests[key] = ds
}

// Remove forgets every token of an app.
func (ix *Index) Remove(key types.NamespacedName) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(key)
}

func (ix *Index) removeLocked(key types.NamespacedName) {
	for _, d := range ix.digests[key] {
		delete(ix.byDigest, d)
	}
	delete(ix.digests, key)
}
