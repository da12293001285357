// Package v1alpha1 is the insights.privateapps.dev/v1alpha1 API: read-only
// views of what apps did, served by the operator's aggregated API server
// (internal/insights) rather than stored as custom resources.
// +kubebuilder:object:generate=true
// +kubebuilder:skip
// +k8s:openapi-gen=true
// +groupName=insights.privateapps.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of the insights.
const GroupName = "insights.privateapps.dev"

// SchemeGroupVersion is the group and version of every kind in this package.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resource names a resource of this group.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

// AddToScheme registers the kinds of this package. The aggregated API
// server has no storage of its own to convert from, so the same types also
// stand for the internal version.
func AddToScheme(scheme *runtime.Scheme) error {
	for _, gv := range []schema.GroupVersion{SchemeGroupVersion, {Group: GroupName, Version: runtime.APIVersionInternal}} {
		scheme.AddKnownTypes(gv, &Call{}, &CallList{}, &RecordInsight{}, &RecordInsightList{}, &NeedsAttention{}, &NeedsAttentionList{}, &APIUsage{}, &APIUsageList{})
	}
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
