package cluster

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The images the cluster writes for itself: there is no registry to pull
// them from.
const (
	pauseImage   = "privateapps.local/pause:1"
	corednsImage = "privateapps.local/coredns:v1.15.0"
	// ProbeImage runs `tool check` in a pod (tool/main.go).
	ProbeImage = "privateapps.local/probe:1"
)

// writeNodeImages builds the tool binary and writes the pause, probe and
// CoreDNS images as archives; it returns their paths.
func (c *Cluster) writeNodeImages() ([]string, error) {
	tool := c.path("images", "tool")
	cmd := exec.Command("go", "build", "-trimpath", "-o", tool, "github.com/privateapps-dev/privateapp-operator/test/cluster/tool")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if _, file, _, ok := runtime.Caller(0); ok {
		cmd.Dir = filepath.Dir(file)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the images' tool: %w: %s", err, out)
	}
	images := []struct {
		ref, bin, target string
		entrypoint       []string
		user             string
	}{
		{pauseImage, tool, "/tool", []string{"/tool", "pause"}, "65535:65535"},
		{ProbeImage, tool, "/tool", []string{"/tool"}, "65532:65532"},
		{corednsImage, c.bin("coredns"), "/coredns", []string{"/coredns"}, "65532:65532"},
	}
	var paths []string
	for _, i := range images {
		p := c.path("images", filepath.Base(i.target)+"-"+fmt.Sprint(len(paths))+".tar")
		if err := writeImage(p, i.ref, i.bin, i.target, i.entrypoint, i.user); err != nil {
			return nil, fmt.Errorf("image %s: %w", i.ref, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// writeImage writes a Docker archive of a FROM-scratch image holding one
// static binary.
func writeImage(out, ref, bin, target string, entrypoint []string, user string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: target[1:], Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		return err
	}
	diffID, err := layer.DiffID()
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		Config:       v1.Config{Entrypoint: entrypoint, User: user},
	})
	if err != nil {
		return err
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, tag, img)
}
