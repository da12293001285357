// Package hubid hands out the numeric ids that HubSpot's API shows where
// this project has names: hubId for an account (a namespace), appId for a
// private app, userId for the user who installed it. HubSpot's client
// libraries and the scripts written against its documentation read them as
// numbers.
//
// Every id comes from one counter kept in a ConfigMap of the operator's
// namespace, so no two ids in a cluster are alike, of any kind, and none is
// given twice even after the thing it named is gone. The ConfigMap also
// remembers the id of each namespace (by UID: a namespace deleted and made
// again is a new account) and of each user (by a SHA-256 digest of the
// name), so every app of an account, and every app a user installs, shows
// the same one. An app's own id is recorded in its status only.
package hubid

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// First is the first id the counter gives; ids stay far below 2^53, so
// JavaScript reads them exactly.
const First = 1000001

// keyNext is the ConfigMap key of the next id to give.
const keyNext = "next"

// Registry gives ids, remembering them in the ConfigMap Key. It reads the
// ConfigMap without a cache (Reader), so it needs no informer on ConfigMaps,
// and writes it with optimistic concurrency: two processes that give an id
// at once never give the same one.
type Registry struct {
	Reader client.Reader
	Writer client.Writer
	Key    types.NamespacedName
	// InUse, when set, gives the largest id in use (in PrivateApp status):
	// a registry made anew, because its ConfigMap was lost, counts on from
	// above it instead of giving used numbers again.
	InUse func(ctx context.Context) (int64, error)

	mu sync.Mutex
	// known is the ConfigMap's data as last read or written.
	known map[string]string
}

// Account is the hubId of the namespace whose UID is uid.
func (r *Registry) Account(ctx context.Context, uid types.UID) (int64, error) {
	return r.id(ctx, "account."+string(uid))
}

// User is the userId of the Kubernetes user name.
func (r *Registry) User(ctx context.Context, name string) (int64, error) {
	sum := sha256.Sum256([]byte(name))
	return r.id(ctx, "user."+hex.EncodeToString(sum[:16]))
}

// NewApp gives a new appId.
func (r *Registry) NewApp(ctx context.Context) (int64, error) {
	return r.id(ctx, "")
}

// backoff spaces the attempts of registries that write at once: each
// conflict means another wrote first, and trying again at once keeps the
// losers losing.
var backoff = wait.Backoff{Steps: 12, Duration: 5 * time.Millisecond, Factor: 1.6, Jitter: 1.0, Cap: time.Second}

// errAgain is an attempt that lost to another writer.
var errAgain = errors.New("the id registry changed while an id was given")

// id is the id remembered under key, given now if there is none; an empty
// key gives a new id and remembers nothing.
func (r *Registry) id(ctx context.Context, key string) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.known[key]; ok && key != "" {
		return strconv.ParseInt(v, 10, 64)
	}
	var id int64
	err := retry.OnError(backoff, func(err error) bool { return errors.Is(err, errAgain) }, func() (err error) {
		id, err = r.attempt(ctx, key)
		return err
	})
	if errors.Is(err, errAgain) {
		return 0, fmt.Errorf("the id registry ConfigMap %s kept changing under %d attempts to give an id", r.Key, backoff.Steps)
	}
	return id, err
}

// attempt reads the ConfigMap and, unless key is known, gives the next id
// in one write that fails if anyone wrote since the read.
func (r *Registry) attempt(ctx context.Context, key string) (int64, error) {
	cm := &corev1.ConfigMap{}
	err := r.Reader.Get(ctx, r.Key, cm)
	switch {
	case apierrors.IsNotFound(err):
		next := int64(First)
		if r.InUse != nil {
			used, err := r.InUse(ctx)
			if err != nil {
				return 0, fmt.Errorf("finding the ids in use before making the id registry ConfigMap %s: %w", r.Key, err)
			}
			next = max(next, used+1)
		}
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.Key.Namespace, Name: r.Key.Name, Labels: map[string]string{
				"app.kubernetes.io/managed-by": "privateapp-operator", "app.kubernetes.io/component": "hubspot-ids"}},
			Data: map[string]string{keyNext: strconv.FormatInt(next, 10)},
		}
		if err := r.Writer.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, fmt.Errorf("creating the id registry ConfigMap %s: %w", r.Key, err)
		}
		return 0, errAgain
	case err != nil:
		return 0, fmt.Errorf("reading the id registry ConfigMap %s: %w", r.Key, err)
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	if v, ok := cm.Data[key]; ok && key != "" {
		r.known = cm.Data
		return strconv.ParseInt(v, 10, 64)
	}
	next, err := strconv.ParseInt(cm.Data[keyNext], 10, 64)
	if err != nil || next < First {
		return 0, fmt.Errorf("the id registry ConfigMap %s has no valid %q (%q): ids cannot be given until it is repaired; "+
			"set it above every id in use (the largest hubId, appId or installedByUserId in PrivateApp status)", r.Key, keyNext, cm.Data[keyNext])
	}
	cm.Data[keyNext] = strconv.FormatInt(next+1, 10)
	if key != "" {
		cm.Data[key] = strconv.FormatInt(next, 10)
	}
	// Update carries the resourceVersion read: a concurrent writer makes it
	// a conflict, and the next attempt reads again.
	if err := r.Writer.Update(ctx, cm); err != nil {
		if apierrors.IsConflict(err) {
			return 0, errAgain
		}
		return 0, fmt.Errorf("writing the id registry ConfigMap %s: %w", r.Key, err)
	}
	r.known = cm.Data
	return next, nil
}

// LargestInUse is the largest hubId, appId or installedByUserId in the
// status of any PrivateApp, read page by page from the API server.
func LargestInUse(ctx context.Context, r client.Reader) (int64, error) {
	var largest int64
	list := &v1alpha1.PrivateAppList{}
	for {
		if err := r.List(ctx, list, client.Limit(500), client.Continue(list.Continue)); err != nil {
			return 0, err
		}
		for i := range list.Items {
			st := &list.Items[i].Status
			largest = max(largest, st.HubID, st.AppID, st.InstalledByUserID)
		}
		if list.Continue == "" {
			return largest, nil
		}
	}
}
