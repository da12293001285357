package insights

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
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
	// Address is host:port to serve HTTPS on.
	Address string
	// CertFile and KeyFile are its serving certificate, whose CA the
	// APIService's caBundle names; reloaded when they change. Empty makes
	// a self-signed one in CertDir, for an APIService with
	// insecureSkipTLSVerify (local use only).
	CertFile, KeyFile, CertDir string
	// Kubeconfig reaches the kube-apiserver that authenticates and
	// authorizes each request (TokenReview, SubjectAccessReview) and
	// publishes the front proxy's CA; empty is the in-cluster config.
	Kubeconfig string
	Store      calllog.Store
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
	host, portText, err := net.SplitHostPort(o.Address)
	if err != nil {
		return nil, fmt.Errorf("insights address %q: %w", o.Address, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("insights address %q: the port is not a number", o.Address)
	}
	serving := genericoptions.NewSecureServingOptions().WithLoopback()
	serving.BindPort = port
	if host != "" {
		if serving.BindAddress = net.ParseIP(host); serving.BindAddress == nil {
			return nil, fmt.Errorf("insights address %q: the host must be an IP address", o.Address)
		}
	}
	serving.ServerCert.CertKey = genericoptions.CertKey{CertFile: o.CertFile, KeyFile: o.KeyFile}
	serving.ServerCert.CertDirectory = o.CertDir
	if o.CertFile == "" {
		if err := serving.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
			return nil, fmt.Errorf("insights: making a self-signed certificate: %w", err)
		}
	}
	cfg := genericapiserver.NewConfig(Codecs)
	if err := serving.ApplyTo(&cfg.SecureServing, &cfg.LoopbackClientConfig); err != nil {
		return nil, fmt.Errorf("insights: %w", err)
	}
	authn := genericoptions.NewDelegatingAuthenticationOptions()
	authn.RemoteKubeConfigFile = o.Kubeconfig
	if err := authn.ApplyTo(&cfg.Authentication, cfg.SecureServing, nil); err != nil {
		return nil, fmt.Errorf("insights: delegated authentication: %w", err)
	}
	authz := genericoptions.NewDelegatingAuthorizationOptions()
	authz.RemoteKubeConfigFile = o.Kubeconfig
	if err := authz.ApplyTo(&cfg.Authorization); err != nil {
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
