package v1alpha1

// Labels and annotations the operator reads or writes.
const (
	// EditionLabel on a namespace selects the account's edition (free,
	// starter, professional, enterprise) and so its rate limits.
	EditionLabel = "privateapps.dev/edition"
	// APILimitIncreaseLabel set to "true" on a namespace is the paid API add-on.
	APILimitIncreaseLabel = "privateapps.dev/api-limit-increase"
	// InstalledByAnnotation on a PrivateApp names the Kubernetes user who
	// created it. The admission webhook sets it; the controller copies it into
	// status.installedBy.
	InstalledByAnnotation = "privateapps.dev/installed-by"
	// ChangedByAnnotation on a PrivateApp names the Kubernetes user who last
	// changed its spec (suspended, reconnected it, changed its scopes). The
	// admission webhook sets it on every change of the spec; the controller
	// names that user in the activity log.
	ChangedByAnnotation = "privateapps.dev/changed-by"
	// AppNameLabel on a token Secret names the PrivateApp it belongs to.
	AppNameLabel = "privateapps.dev/app"
	// ManagedByLabel on a token Secret says that the operator wrote it.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel on objects the operator owns.
	ManagedByValue = "privateapp-operator"
)

// ConditionReady is the condition type every kind of this API reports; Argo CD
// and `kubectl wait --for=condition=Ready` read it.
const ConditionReady = "Ready"
