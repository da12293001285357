package controller

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// AppsByConnection is a Prometheus collector of how many PrivateApps are in
// each connection state, counted from the manager's cache at scrape time.
type AppsByConnection struct {
	Reader client.Reader
}

var appsDesc = prometheus.NewDesc("privateapps_apps",
	"PrivateApps by connection state (Pending, Connected, Disconnected, Expired, Error; empty while the first token is on its way).",
	[]string{"connection"}, nil)

// Describe implements prometheus.Collector.
func (c AppsByConnection) Describe(ch chan<- *prometheus.Desc) { ch <- appsDesc }

// Collect implements prometheus.Collector.
func (c AppsByConnection) Collect(ch chan<- prometheus.Metric) {
	var apps v1alpha1.PrivateAppList
	if err := c.Reader.List(context.Background(), &apps); err != nil {
		return
	}
	counts := map[v1alpha1.ConnectionState]int{
		v1alpha1.ConnectionPending: 0, v1alpha1.ConnectionConnected: 0, v1alpha1.ConnectionDisconnected: 0,
		v1alpha1.ConnectionExpired: 0, v1alpha1.ConnectionError: 0,
	}
	for _, a := range apps.Items {
		counts[a.Status.Connection]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(appsDesc, prometheus.GaugeValue, float64(n), string(state))
	}
}
