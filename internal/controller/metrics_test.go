package controller

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

func TestAppsByConnection(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	app := func(name string, c v1alpha1.ConnectionState) *v1alpha1.PrivateApp {
		return &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Status: v1alpha1.PrivateAppStatus{Connection: c}}
	}
	r := fake.NewClientBuilder().WithScheme(s).WithObjects(
		app("a", v1alpha1.ConnectionConnected), app("b", v1alpha1.ConnectionConnected),
		app("c", v1alpha1.ConnectionDisconnected), app("d", v1alpha1.ConnectionPending),
	).Build()
	want := `
# HELP privateapps_apps PrivateApps by connection state (Pending, Connected, Disconnected, Expired, Error; empty while the first token is on its way).
# TYPE privateapps_apps gauge
privateapps_apps{connection="Connected"} 2
privateapps_apps{connection="Disconnected"} 1
privateapps_apps{connection="Error"} 0
privateapps_apps{connection="Expired"} 0
privateapps_apps{connection="Pending"} 1
`
	if err := testutil.CollectAndCompare(AppsByConnection{Reader: r}, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
