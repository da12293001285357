package command

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/catalogfeed"
)

// NewManager is the component's controller-runtime manager, with the
// liveness check every component answers (/healthz); readiness is the
// component's own.
func NewManager(cfg *rest.Config, opts ctrl.Options) (ctrl.Manager, error) {
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	return mgr, mgr.AddHealthzCheck("healthz", healthz.Ping)
}

// AddCatalogs compiles the APICatalogs in this process and keeps them
// current from the manager's informer: the token service matches routes,
// the webhooks and the controller check scopes.
func AddCatalogs(ctx context.Context, mgr ctrl.Manager) (*catalogfeed.Feed, error) {
	catalogs := catalogfeed.New(ctrl.Log.WithName("catalogs"))
	if err := catalogs.Register(ctx, mgr.GetCache()); err != nil {
		return nil, fmt.Errorf("watching APICatalogs: %w", err)
	}
	return catalogs, mgr.Add(catalogs)
}

// AddCallLogQueue puts the call log's bounded queue between the checks and
// w (a store, or the insights component's ingest endpoint), redacting the
// usual credential parameters and the comma-separated sensitive ones.
func AddCallLogQueue(mgr ctrl.Manager, w calllog.Writer, sensitive string) (*calllog.Queue, error) {
	metrics.Registry.MustRegister(calllog.Collectors()...)
	queue := calllog.NewQueue(w, calllog.QueueOptions{Redactor: calllog.NewRedactor(CommaList(sensitive)...)}, ctrl.Log.WithName("call-log"))
	return queue, mgr.Add(queue)
}
