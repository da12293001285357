package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// IDRegistry gives the numbers HubSpot's API shows (internal/hubid).
type IDRegistry interface {
	Account(ctx context.Context, namespaceUID types.UID) (int64, error)
	User(ctx context.Context, name string) (int64, error)
	NewApp(ctx context.Context) (int64, error)
}

// idRetry is how soon an app whose numbers could not be given is looked at
// again.
const idRetry = time.Minute

// assignIDs gives the app the numbers it lacks: its appId, its account's
// hubId and its installer's userId. The numbers are a convenience for
// HubSpot's clients, never a condition of the token: a registry that cannot
// answer is logged and tried again in a minute (the duration returned;
// zero when nothing is missing), and the app is reconciled as usual.
func (r *PrivateAppReconciler) assignIDs(ctx context.Context, s *appScope) time.Duration {
	if r.IDs == nil {
		return 0
	}
	st := &s.app.Status
	var err error
	if st.AppID == 0 {
		if st.AppID, err = r.IDs.NewApp(ctx); err != nil {
			return r.idsFailed(ctx, err)
		}
	}
	if st.HubID == 0 {
		ns := &metav1.PartialObjectMetadata{}
		ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		if err := r.APIReader.Get(ctx, client.ObjectKey{Name: s.app.Namespace}, ns); err != nil {
			return r.idsFailed(ctx, err)
		}
		if st.HubID, err = r.IDs.Account(ctx, ns.UID); err != nil {
			return r.idsFailed(ctx, err)
		}
	}
	if st.InstalledByUserID == 0 && st.InstalledBy != "" {
		if st.InstalledByUserID, err = r.IDs.User(ctx, st.InstalledBy); err != nil {
			return r.idsFailed(ctx, err)
		}
	}
	return 0
}

func (r *PrivateAppReconciler) idsFailed(ctx context.Context, err error) time.Duration {
	log.FromContext(ctx).Error(err, "giving the app its HubSpot ids (hubId, appId, userId); the token is not affected, trying again", "after", idRetry)
	return idRetry
}
