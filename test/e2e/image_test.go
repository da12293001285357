package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/privateapps-dev/privateapp-operator/test/framework"

	"github.com/google/go-containerregistry/pkg/registry"
)

// TestImage: `make image` (hack/image) writes the image the Dockerfile
// describes, without Docker: the Dockerfile's own build lines make a static
// binary of each component (manager, token-service, insights), the configuration has the Dockerfile's USER, ENTRYPOINT and
// LABELs, the layer has what distroless/static gives the binary, two builds
// are byte for byte the same archive, and --push puts that image into a
// registry. The archive is read here with tar and JSON, not with the
// library that wrote it.
func TestImage(t *testing.T) {
	root := repoRoot(t)
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	must(t, err)
	df := string(dockerfile)
	for _, want := range []string{"FROM gcr.io/distroless/static:nonroot", "COPY --from=build /manager /manager", "USER 65532:65532", `ENTRYPOINT ["/manager"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	for _, component := range []string{framework.Manager, framework.TokenService, framework.Insights} {
		if !regexp.MustCompile(`(?m)^RUN CGO_ENABLED=0 GOOS=\$\{TARGETOS\} GOARCH=\$\{TARGETARCH\} go build .* -o /`+component+` \./cmd/`+component+`$`).MatchString(df) ||
			!strings.Contains(df, "COPY --from=build /"+component+" /"+component) {
			t.Errorf("the Dockerfile does not build and copy /%s: no `RUN CGO_ENABLED=0 ... go build ... -o /%[1]s ./cmd/%[1]s` line and COPY", component)
		}
	}

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	pushed := strings.TrimPrefix(reg.URL, "http://") + "/privateapp-operator:test"
	tmp := t.TempDir()
	tool := build(t, root, "./hack/image", filepath.Join(tmp, "image"))
	makeImage := func(out string, extra ...string) []byte {
		t.Helper()
		cmd := exec.Command(tool, append([]string{"--tag", "privateapp-operator:test", "--out", out}, extra...)...)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hack/image: %v\n%s", err, b)
		}
		b, err := os.ReadFile(out)
		must(t, err)
		return b
	}
	first := makeImage(filepath.Join(tmp, "a.tar"), "--push", pushed)
	if second := makeImage(filepath.Join(tmp, "b.tar")); !bytes.Equal(first, second) {
		t.Errorf("two builds of the same sources differ: %x and %x", sha256.Sum256(first), sha256.Sum256(second))
	}

	_, blobs := untar(t, first)
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	must(t, json.Unmarshal(blobs["index.json"], &index))
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json lists %d images, want 1", len(index.Manifests))
	}
	if got := index.Manifests[0].Annotations["io.containerd.image.name"]; got != "docker.io/library/privateapp-operator:test" {
		t.Errorf("containerd would name the image %q, want docker.io/library/privateapp-operator:test (what a pod's image privateapp-operator:test means)", got)
	}
	blob := func(digest string) []byte {
		t.Helper()
		b, ok := blobs["blobs/sha256/"+strings.TrimPrefix(digest, "sha256:")]
		if !ok {
			t.Fatalf("the archive lacks the blob %s", digest)
		}
		if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != digest {
			t.Fatalf("the blob %s does not have its digest", digest)
		}
		return b
	}
	var manifest struct {
		MediaType string `json:"mediaType"`
		Config    struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	must(t, json.Unmarshal(blob(index.Manifests[0].Digest), &manifest))
	if manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" || len(manifest.Layers) != 1 {
		t.Fatalf("manifest %+v: want one OCI image with one layer", manifest)
	}
	var config struct {
		OS, Architecture string
		Config           struct {
			User       string
			Entrypoint []string
			Labels     map[string]string
		} `json:"config"`
	}
	must(t, json.Unmarshal(blob(manifest.Config.Digest), &config))
	if config.Config.User != "65532:65532" || strings.Join(config.Config.Entrypoint, " ") != "/manager" || config.OS != "linux" || config.Architecture != "amd64" {
		t.Errorf("the image's configuration %+v is not the Dockerfile's (USER 65532:65532, ENTRYPOINT [\"/manager\"], linux/amd64)", config)
	}
	for _, m := range regexp.MustCompile(`(org\.opencontainers\.image\.\w+)="([^"]*)"`).FindAllStringSubmatch(df, -1) {
		if config.Config.Labels[m[1]] != m[2] {
			t.Errorf("label %s is %q in the image, %q in the Dockerfile", m[1], config.Config.Labels[m[1]], m[2])
		}
	}
	if len(config.Config.Labels) < 3 {
		t.Errorf("the image has labels %v; the Dockerfile has three", config.Config.Labels)
	}

	zr, err := gzip.NewReader(bytes.NewReader(blob(manifest.Layers[0].Digest)))
	must(t, err)
	layer, err := io.ReadAll(zr)
	must(t, err)
	files, contents := untar(t, layer)
	for name, want := range map[string]struct {
		mode int64
		uid  int
	}{"manager": {0o755, 0}, "token-service": {0o755, 0}, "insights": {0o755, 0}, "tmp/": {0o1777, 0}, "home/nonroot/": {0o700, 65532}, "etc/passwd": {0o644, 0}, "etc/ssl/certs/ca-certificates.crt": {0o644, 0}} {
		h, ok := files[name]
		if !ok {
			t.Errorf("the layer lacks %s", name)
			continue
		}
		if h.Mode != want.mode || h.Uid != want.uid {
			t.Errorf("%s has mode %o and owner %d, want %o and %d", name, h.Mode, h.Uid, want.mode, want.uid)
		}
	}
	if !strings.Contains(string(contents["etc/passwd"]), "nonroot:x:65532:65532:") || !strings.Contains(string(contents["etc/ssl/certs/ca-certificates.crt"]), "BEGIN CERTIFICATE") {
		t.Errorf("/etc/passwd or the CA bundle is not what the manager needs")
	}
	// Each command is static (distroless/static has no loader or
	// libraries) and is the component it is named after.
	for component, flag := range map[string]string{"manager": "--max-apps-per-namespace", "token-service": "--token-service-bind-address", "insights": "--requestheader-client-ca-file"} {
		bin := filepath.Join(tmp, component)
		must(t, os.WriteFile(bin, contents[component], 0o755))
		f, err := elf.Open(bin)
		must(t, err)
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("/%s needs a dynamic loader; distroless/static has none", component)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("/%s links %v; distroless/static has none", component, libs)
		}
		f.Close()
		if out, _ := exec.Command(bin, "--help").CombinedOutput(); !strings.Contains(string(out), flag) {
			t.Errorf("the image's /%s --help lacks %s:\n%s", component, flag, out)
		}
	}

	// The registry holds the same image.
	req, _ := http.NewRequest(http.MethodHead, reg.URL+"/v2/privateapp-operator/manifests/test", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode != 200 || got != index.Manifests[0].Digest {
		t.Errorf("the pushed image is %d %q, want the archive's %s", resp.StatusCode, got, index.Manifests[0].Digest)
	}
}

// untar reads a tar archive: each entry's header, and the contents of its
// regular files.
func untar(t *testing.T, b []byte) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	headers, contents := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return headers, contents
		}
		must(t, err)
		headers[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			must(t, err)
			contents[h.Name] = data
		}
	}
}
