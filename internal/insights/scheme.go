// Package insights is the operator's aggregated API server: it serves the
// insights.privateapps.dev API (the call log) through the kube-apiserver's
// aggregation layer, as metrics-server serves metrics.k8s.io, so that
// `kubectl get calls` reads with the user's own credentials and RBAC decides
// who may read which namespace.
package insights

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
)

var (
	// Scheme holds the kinds the server serves.
	Scheme = runtime.NewScheme()
	// Codecs encodes them.
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	utilruntime.Must(insightsv1alpha1.AddToScheme(Scheme))
	// The generic server reads list options as metav1's unversioned kinds.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned, &metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
	for kind, f := range map[string]func(label, value string) (string, string, error){
		"Call":           fieldLabel("calls", sortedKeys(callFields)),
		"RecordInsight":  fieldLabel("recordinsights", recordFields),
		"APIUsage":       fieldLabel("apiusages", usageFields),
		"NeedsAttention": fieldLabel("needsattention", attentionFields),
	} {
		utilruntime.Must(Scheme.AddFieldLabelConversionFunc(insightsv1alpha1.SchemeGroupVersion.WithKind(kind), f))
	}
}
