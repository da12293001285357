package insights

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/insights/openapi"
)

// The insights component reads apps (to drop reports of unknown ones) and
// catalogs, and asks the kube-apiserver who each caller is and what they
// may read. It also reads the kube-apiserver's front-proxy CA from
// kube-system/extension-apiserver-authentication, through the built-in
// Role extension-apiserver-authentication-reader.
// +kubebuilder:rbac:groups=privateapps.dev,resources=privateapps;apicatalogs,verbs=get;list;watch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Options configure the aggregated API server.
type Options struct {
	// Serving, Authentication and Authorization are k8s.io/apiserver's
	// own options (the --secure-port, --tls-*, --authentication-* and
	// --requestheader-* flags of every aggregated API server), already
	// defaulted and validated; NewServingOptions makes them.
	Serving        *genericoptions.SecureServingOptionsWithLoopback
	Authentication *genericoptions.DelegatingAuthenticationOptions
	Authorization  *genericoptions.DelegatingAuthorizationOptions
	Store          calllog.Store
	// Apps reads PrivateApps and APICatalogs (the manager's cache), for
	// needs attention, API usage and the record types insights show.
	Apps client.Reader
	// Retention is how long the call log keeps entries: the days record
	// insights reach back.
	Retention time.Duration
	// MaxRecordRows bounds one answer of record insights (namespaces ×
	// days × record types; DefaultMaxRecordRows when zero): a larger one
	// is refused with what narrows it.
	MaxRecordRows int
	Clock         clock.PassiveClock
	Log           logr.Logger
}

// DefaultPort is the insights API's port: the chart's Service targets it.
const DefaultPort = 8444

// NewServingOptions are the serving, delegated authentication and
// delegated authorization options with this server's defaults: port 8444,
// and a self-signed certificate kept in certDir when no --tls-cert-file is
// given (for an APIService with insecureSkipTLSVerify: local use only).
func NewServingOptions(certDir string) (*genericoptions.SecureServingOptionsWithLoopback, *genericoptions.DelegatingAuthenticationOptions, *genericoptions.DelegatingAuthorizationOptions) {
	serving := genericoptions.NewSecureServingOptions().WithLoopback()
	serving.BindPort = DefaultPort
	serving.ServerCert.CertDirectory = certDir
	serving.ServerCert.PairName = "insights"
	return serving, genericoptions.NewDelegatingAuthenticationOptions(), genericoptions.NewDelegatingAuthorizationOptions()
}

// Server is the aggregated API server, a manager Runnable.
type Server struct {
	generic *genericapiserver.GenericAPIServer
	log     logr.Logger
}

// New builds the server: delegated authentication (the front proxy's client
// certificate and X-Remote-* headers, client certificates, tokens through
// TokenReview) and delegated authorization (SubjectAccessReview), as every
// aggregated API server does, then the insights API group.
func New(o Options) (*Server, error) {
	if o.Serving == nil || o.Authentication == nil || o.Authorization == nil {
		return nil, errors.New("insights: no serving, authentication or authorization options")
	}
	if o.Serving.ServerCert.CertKey.CertFile == "" {
		if err := o.Serving.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
			return nil, fmt.Errorf("insights: making a self-signed certificate: %w", err)
		}
	}
	cfg := genericapiserver.NewConfig(Codecs)
	if err := o.Serving.ApplyTo(&cfg.SecureServing, &cfg.LoopbackClientConfig); err != nil {
		return nil, fmt.Errorf("insights: %w", err)
	}
	if err := o.Authentication.ApplyTo(&cfg.Authentication, cfg.SecureServing, nil); err != nil {
		return nil, fmt.Errorf("insights: delegated authentication: %w", err)
	}
	if err := o.Authorization.ApplyTo(&cfg.Authorization); err != nil {
		return nil, fmt.Errorf("insights: delegated authorization: %w", err)
	}

	cfg.EffectiveVersion = utilcompatibility.DefaultBuildEffectiveVersion()
	// OpenAPI lets kubectl explain calls, and the generic server needs the
	// models to serve any resource.
	namer := openapinamer.NewDefinitionNamer(Scheme)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openapi.GetOpenAPIDefinitions, namer)
	cfg.OpenAPIConfig.Info.Title, cfg.OpenAPIConfig.Info.Version = "privateapp-operator insights", "v1alpha1"
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openapi.GetOpenAPIDefinitions, namer)
	cfg.OpenAPIV3Config.Info.Title, cfg.OpenAPIV3Config.Info.Version = "privateapp-operator insights", "v1alpha1"
	// The server's own Prometheus metrics would register in client-go's
	// global registry; the operator's metrics endpoint has its own.
	cfg.EnableMetrics = false
	generic, err := cfg.Complete(nil).New("privateapp-insights", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("insights: %w", err)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Retention == 0 {
		o.Retention = calllog.DefaultRetention
	}
	if o.Apps == nil {
		return nil, errors.New("insights: no reader of apps")
	}
	group := genericapiserver.NewDefaultAPIGroupInfo(insightsv1alpha1.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	group.VersionedResourcesStorageMap[insightsv1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"calls":          &calls{store: o.Store, clock: o.Clock},
		"recordinsights": &records{store: o.Store, apps: o.Apps, clock: o.Clock, days: daysKept(o.Retention), maxRows: cmp.Or(o.MaxRecordRows, DefaultMaxRecordRows)},
		"apiusages":      &usage{apps: o.Apps, clock: o.Clock},
		"needsattention": &attention{apps: o.Apps, clock: o.Clock},
	}
	if err := generic.InstallAPIGroup(&group); err != nil {
		return nil, fmt.Errorf("insights: %w", err)
	}
	return &Server{generic: generic, log: o.Log}, nil
}

// NeedLeaderElection is false: every replica serves reads.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	s.log.Info("serving insights.privateapps.dev")
	return s.generic.PrepareRun().RunWithContext(ctx)
}
