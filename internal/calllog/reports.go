package calllog

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// DefaultReportWait is how long an allowed check waits for its gateway's
// report before it shows ReasonNoGatewayReport: longer than a gateway lets
// a request run (nginx's proxy_read_timeout is 60 s), since the gateway
// reports a call when it ends and the token service logs it when it
// starts.
const DefaultReportWait = 5 * time.Minute

// MaxGatewayLabels bounds the gateway label of the missing-reports metric:
// gateway names come from check URLs, which any holder of a valid token can
// write. Names past the first MaxGatewayLabels count as "other".
const MaxGatewayLabels = 32

// GatewayReportsMissing counts allowed checks whose gateway's report did
// not arrive within the wait, by gateway: lines the gateway could not
// deliver (the insights component was down or restarting) or dropped.
var GatewayReportsMissing = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "privateapps_calllog_gateway_reports_missing_total",
	Help: "Calls a gateway's check URL said it would report whose access-log line did not arrive in time, by gateway; they show reason no_gateway_report.",
}, []string{"gateway"})

// GatewayReports marks, every few seconds, the allowed checks whose
// gateway's report is overdue (Store.MarkUnreported), and counts them in
// GatewayReportsMissing. Every replica of the insights component may run
// it: the store counts each entry once.
type GatewayReports struct {
	Store Store
	// Wait is how long a report may take (DefaultReportWait when zero).
	Wait  time.Duration
	Clock clock.WithTicker
	Log   logr.Logger

	mu     sync.Mutex
	labels map[string]bool
}

// NeedLeaderElection is false: replicas mark different entries, or none.
func (g *GatewayReports) NeedLeaderElection() bool { return false }

func (g *GatewayReports) wait() time.Duration {
	if g.Wait <= 0 {
		return DefaultReportWait
	}
	return g.Wait
}

// Start marks overdue entries until ctx ends.
func (g *GatewayReports) Start(ctx context.Context) error {
	every := min(max(g.wait()/5, time.Second), 30*time.Second)
	for {
		if err := g.Sweep(ctx); err != nil && ctx.Err() == nil {
			g.Log.Error(err, "marking calls without a gateway report failed; trying again", "in", every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-g.Clock.After(every):
		}
	}
}

// Sweep marks the entries overdue now.
func (g *GatewayReports) Sweep(ctx context.Context) error {
	counts, err := g.Store.MarkUnreported(ctx, g.Clock.Now().Add(-g.wait()))
	if err != nil {
		return err
	}
	for gateway, n := range counts {
		GatewayReportsMissing.WithLabelValues(g.label(gateway)).Add(float64(n))
		g.Log.V(1).Info("calls without a gateway report", "gateway", gateway, "calls", n)
	}
	return nil
}

func (g *GatewayReports) label(gateway string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.labels == nil {
		g.labels = map[string]bool{}
	}
	if !g.labels[gateway] && len(g.labels) >= MaxGatewayLabels {
		return "other"
	}
	g.labels[gateway] = true
	return gateway
}
