package webhook

import (
	"crypto/x509"
	"encoding/pem"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/internal/certs"
)

var _ = Describe("The operator's CA and the insights APIService", func() {
	It("issues the insights serving certificate and puts the CA into the APIService", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "certs-"}}
		Expect(admin.Create(ctx, ns)).To(Succeed())
		apiService := testAPIService(ns.Name, "insights-test.privateapps.dev")

		r := &CertRotator{Client: admin, Reader: admin, Namespace: ns.Name, Prefix: "privateapp", APIServices: []string{apiService.Name},
			Policy: certs.DefaultPolicy, Clock: clock.RealClock{}, Interval: time.Minute, Log: ctrl.Log.WithName("certificates")}
		Expect(r.Sync(ctx)).To(Succeed())

		Expect(admin.Get(ctx, client.ObjectKeyFromObject(apiService), apiService)).To(Succeed())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(apiService.Spec.CABundle)).To(BeTrue(), "the APIService has no CA bundle")
		tls := &corev1.Secret{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "privateapp-insights-tls"}, tls)).To(Succeed())
		block, _ := pem.Decode(tls.Data["tls.crt"])
		Expect(block).NotTo(BeNil())
		cert, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		_, err = cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "privateapp-insights." + ns.Name + ".svc"})
		Expect(err).NotTo(HaveOccurred(), "the insights certificate does not verify for its Service with the APIService's bundle")

		// A second pass changes nothing.
		before := apiService.ResourceVersion
		Expect(r.Sync(ctx)).To(Succeed())
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(apiService), apiService)).To(Succeed())
		Expect(apiService.ResourceVersion).To(Equal(before))
	})
})

var _ = Describe("The operator's CA renewal", func() {
	It("puts the next CA into the APIService's bundle before any serving certificate it signs", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "certs-"}}
		Expect(admin.Create(ctx, ns)).To(Succeed())
		apiService := testAPIService(ns.Name, "insights-renewal.privateapps.dev")

		day := 24 * time.Hour
		fake := clocktesting.NewFakeClock(time.Now())
		r := &CertRotator{Client: admin, Reader: admin, Namespace: ns.Name, Prefix: "privateapp", APIServices: []string{apiService.Name},
			Policy: certs.Policy{CAValidity: 30 * day, LeafValidity: 6 * day, Propagation: 3 * day},
			Clock:  fake, Interval: time.Minute, Log: ctrl.Log.WithName("certificates")}
		bundle := func() []byte {
			Expect(admin.Get(ctx, client.ObjectKeyFromObject(apiService), apiService)).To(Succeed())
			return apiService.Spec.CABundle
		}
		// verifies says whether the insights serving certificate verifies
		// with a bundle, at the fake clock's time.
		verifies := func(b []byte) bool {
			roots := x509.NewCertPool()
			Expect(roots.AppendCertsFromPEM(b)).To(BeTrue())
			s := &corev1.Secret{}
			Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "privateapp-insights-tls"}, s)).To(Succeed())
			block, _ := pem.Decode(s.Data["tls.crt"])
			cert, err := x509.ParseCertificate(block.Bytes)
			Expect(err).NotTo(HaveOccurred())
			_, err = cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "privateapp-insights." + ns.Name + ".svc", CurrentTime: fake.Now()})
			return err == nil
		}
		Expect(r.Sync(ctx)).To(Succeed())
		first := bundle()
		Expect(verifies(first)).To(BeTrue())

		// The CA's last third: the next CA is published, the old one signs.
		fake.Step(21 * day)
		Expect(r.Sync(ctx)).To(Succeed())
		published := bundle()
		Expect(published).NotTo(Equal(first), "the next CA is not in the APIService's bundle")
		Expect(verifies(first)).To(BeTrue(), "a serving certificate of the next CA is served before its propagation ended")

		// After the propagation period: the next CA signs; holders of the
		// bundle taken at publication verify it, holders of the first do not.
		fake.Step(3*day + time.Hour)
		Expect(r.Sync(ctx)).To(Succeed())
		Expect(verifies(published)).To(BeTrue())
		Expect(verifies(first)).To(BeFalse(), "the signer did not change")
	})
})

// testAPIService registers an APIService for a group of the spec's own,
// served by privateapp-insights in ns, and removes it at the end, so no
// other spec meets an aggregated API that nothing serves.
func testAPIService(ns, group string) *apiregistrationv1.APIService {
	port := int32(443)
	a := &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: "v1alpha1." + group},
		Spec: apiregistrationv1.APIServiceSpec{Group: group, Version: "v1alpha1",
			Service:              &apiregistrationv1.ServiceReference{Namespace: ns, Name: "privateapp-insights", Port: &port},
			GroupPriorityMinimum: 1000, VersionPriority: 15},
	}
	Expect(admin.Create(ctx, a)).To(Succeed())
	DeferCleanup(func() { Expect(admin.Delete(ctx, a)).To(Succeed()) })
	return a
}
