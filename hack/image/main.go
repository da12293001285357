// Command image writes the operator's image as an OCI archive, from Go code,
// with no Docker engine, no registry and no daemon: what `docker build` makes
// of the Dockerfile, made here from the Dockerfile itself.
//
// It reads the Dockerfile's build stage for its `go build` lines and runs
// them as written (with the ARG defaults, and with -buildvcs=false, since
// the Docker build context has no .git), then lays the binaries at the
// paths the final stage copies them to, on a layer with what
// distroless/static gives them: CA certificates, /etc/passwd and
// /etc/group with the nonroot user 65532, /home/nonroot and /tmp. The final
// stage's USER, ENTRYPOINT and LABELs become the image's configuration. So
// the two cannot describe different images, and `make image` is the
// Dockerfile for machines without Docker.
//
// The archive is reproducible: the same sources, Go version and CA bundle
// give the same digest (every time in the image is --epoch, files are in
// order, owners fixed).
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	var o options
	flag.StringVar(&o.dockerfile, "dockerfile", "Dockerfile", "The Dockerfile whose build lines, USER, ENTRYPOINT and LABELs make the image.")
	flag.StringVar(&o.tag, "tag", "privateapp-operator:dev", "The image's name, as the archive records it (ctr names the imported image after it).")
	flag.StringVar(&o.out, "out", "bin/image/privateapp-operator.tar", "Where to write the OCI archive.")
	flag.StringVar(&o.caFile, "ca-file", "/etc/ssl/certs/ca-certificates.crt", "The CA certificates the image carries (Debian's ca-certificates).")
	flag.Int64Var(&o.epoch, "epoch", sourceDateEpoch(), "Every time in the image, as seconds since 1970 ($SOURCE_DATE_EPOCH, else 0).")
	flag.StringVar(&o.push, "push", "", "Also push the image to this reference (registry/repository:tag), with the credentials of ~/.docker/config.json.")
	flag.Parse()
	digest, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: %s %s\n", o.out, o.tag, digest)
	fmt.Printf("load it into containerd: ctr -n k8s.io images import %s\n", o.out)
	fmt.Printf("push it:                 skopeo copy oci-archive:%s docker://<registry>/privateapp-operator:<tag>\n", o.out)
}

type options struct {
	dockerfile, tag, out, caFile, push string
	epoch                              int64
}

func sourceDateEpoch() int64 {
	n, _ := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	return n
}

// build writes the archive and returns the image's manifest digest.
func build(o options) (v1.Hash, error) {
	text, err := os.ReadFile(o.dockerfile)
	if err != nil {
		return v1.Hash{}, err
	}
	df, err := ParseDockerfile(string(text))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%s: %w", o.dockerfile, err)
	}
	ca, err := os.ReadFile(o.caFile)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("the image carries CA certificates: %w (install Debian's ca-certificates, or give --ca-file)", err)
	}
	work, err := os.MkdirTemp("", "privateapp-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer func() { _ = os.RemoveAll(work) }()
	root := filepath.Dir(o.dockerfile)
	files := map[string]file{
		"etc/passwd":                        {mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		"etc/group":                         {mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		"etc/nsswitch.conf":                 {mode: 0o644, data: []byte("hosts: files dns\n")},
		"etc/ssl/certs/ca-certificates.crt": {mode: 0o644, data: ca},
		"home/nonroot/":                     {mode: 0o700, uid: 65532},
		"tmp/":                              {mode: 0o1777},
	}
	for _, b := range df.Builds {
		out := filepath.Join(work, filepath.Base(b.Output))
		cmd := exec.Command("sh", "-c", b.Line(out))
		cmd.Dir = root
		// The Docker build context has no .git: no VCS stamp, as there.
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return v1.Hash{}, fmt.Errorf("%s: %w", b.Line(out), err)
		}
		dest, ok := df.Copies[b.Output]
		if !ok {
			return v1.Hash{}, fmt.Errorf("the final stage does not copy %s from the build stage", b.Output)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			return v1.Hash{}, err
		}
		files[strings.TrimPrefix(dest, "/")] = file{mode: 0o755, data: data}
	}
	layerTar, err := tarOf(files, time.Unix(o.epoch, 0))
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := image(df, layerTar, o.epoch)
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if err := writeArchive(img, o.tag, o.out, time.Unix(o.epoch, 0), work); err != nil {
		return v1.Hash{}, err
	}
	if o.push != "" {
		ref, err := name.ParseReference(o.push)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("--push %s: %w", o.push, err)
		}
		if err := remote.Write(ref, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return v1.Hash{}, fmt.Errorf("pushing to %s: %w", o.push, err)
		}
		fmt.Printf("pushed %s\n", ref)
	}
	return digest, nil
}

// image is the OCI image of one layer with the Dockerfile's final-stage
// configuration.
func image(df *Dockerfile, layerTar []byte, epoch int64) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	created := v1.Time{Time: time.Unix(epoch, 0).UTC()}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{Created: created, CreatedBy: "hack/image, from the Dockerfile"}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS, cfg.Created = df.Arch, df.OS, created
	cfg.Config = v1.Config{User: df.User, Entrypoint: df.Entrypoint, Labels: df.Labels, WorkingDir: "/",
		Env: []string{"PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}}
	return mutate.ConfigFile(img, cfg)
}

type file struct {
	mode int64
	uid  int
	data []byte
}

// tarOf is a layer of files (a name ending in / is a directory), with their
// parent directories, in name order, every time at, owned by root unless
// said otherwise.
func tarOf(files map[string]file, at time.Time) ([]byte, error) {
	all := map[string]file{}
	for name, f := range files {
		all[name] = f
		for dir := path.Dir(strings.TrimSuffix(name, "/")); dir != "."; dir = path.Dir(dir) {
			if _, ok := all[dir+"/"]; !ok {
				all[dir+"/"] = file{mode: 0o755}
			}
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range all {
			if !yield(n) {
				return
			}
		}
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := all[n]
		h := &tar.Header{Name: n, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: at, Format: tar.FormatPAX}
		if strings.HasSuffix(n, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes img as an OCI image layout in one tar file (what
// `skopeo copy oci-archive:` and `ctr images import` read), named tag.
func writeArchive(img v1.Image, tag, out string, at time.Time, work string) error {
	ref, err := name.ParseReference(tag, name.WithDefaultRegistry("docker.io"))
	if err != nil {
		return fmt.Errorf("--tag %s: %w", tag, err)
	}
	dir := filepath.Join(work, "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	refName := ref.Identifier()
	registry := ref.Context().RegistryStr()
	if registry == name.DefaultRegistry {
		// containerd and the kubelet spell Docker Hub docker.io.
		registry = "docker.io"
	}
	full := registry + "/" + ref.Context().RepositoryStr() + ":" + refName
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": refName,
		// containerd names an imported image after this.
		"io.containerd.image.name": full,
	})); err != nil {
		return err
	}
	var names []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(names)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, p := range names {
		info, err := os.Stat(p)
		if err != nil {
			return errors.Join(err, f.Close())
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: at, Typeflag: tar.TypeReg, Size: info.Size(), Format: tar.FormatPAX}
		if info.IsDir() {
			h.Name, h.Mode, h.Typeflag, h.Size = h.Name+"/", 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return errors.Join(err, f.Close())
		}
		if !info.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return errors.Join(err, f.Close())
			}
			if _, err := tw.Write(data); err != nil {
				return errors.Join(err, f.Close())
			}
		}
	}
	if err := tw.Close(); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

// Dockerfile is what the image takes from the Dockerfile.
type Dockerfile struct {
	// Builds are the build stage's `go build` lines.
	Builds []BuildLine
	// Copies maps a build-stage path to where the final stage puts it.
	Copies     map[string]string
	User       string
	Entrypoint []string
	Labels     map[string]string
	OS, Arch   string
}

// BuildLine is one `RUN ... go build ... -o <Output> ...` of the build stage.
type BuildLine struct {
	Command string // after RUN, with the ARG defaults filled in
	Output  string
}

// Line is the command with its output moved to out.
func (b BuildLine) Line(out string) string {
	return strings.Replace(b.Command, "-o "+b.Output, "-o "+out, 1)
}

var (
	argRe   = regexp.MustCompile(`(\w+)=(\S+)`)
	buildRe = regexp.MustCompile(`\bgo build\b.*\s-o (\S+)`)
	copyRe  = regexp.MustCompile(`^COPY --from=build (\S+) (\S+)$`)
	labelRe = regexp.MustCompile(`([\w.-]+)="([^"]*)"`)
)

// ParseDockerfile reads the two-stage Dockerfile of this project: a build
// stage (FROM ... AS build) and a final stage.
func ParseDockerfile(text string) (*Dockerfile, error) {
	df := &Dockerfile{Copies: map[string]string{}, Labels: map[string]string{}}
	args := map[string]string{}
	final := false
	// Continuation lines are joined first.
	text = strings.ReplaceAll(text, "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			final = !strings.Contains(strings.ToLower(rest), " as build")
		case "ARG":
			for _, m := range argRe.FindAllStringSubmatch(rest, -1) {
				args[m[1]] = m[2]
			}
		case "RUN":
			if m := buildRe.FindStringSubmatch(rest); m != nil && !final {
				cmd := os.Expand(rest, func(k string) string { return args[k] })
				df.Builds = append(df.Builds, BuildLine{Command: cmd, Output: m[1]})
			}
		case "COPY":
			if m := copyRe.FindStringSubmatch(line); m != nil && final {
				df.Copies[m[1]] = m[2]
			}
		case "USER":
			df.User = rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &df.Entrypoint); err != nil {
				return nil, fmt.Errorf("ENTRYPOINT must be a JSON array: %w", err)
			}
		case "LABEL":
			for _, m := range labelRe.FindAllStringSubmatch(rest, -1) {
				df.Labels[m[1]] = m[2]
			}
		}
	}
	df.OS, df.Arch = args["TARGETOS"], args["TARGETARCH"]
	switch {
	case len(df.Builds) == 0:
		return nil, errors.New(`no "RUN ... go build ... -o <path>" line in the build stage`)
	case df.User == "" || len(df.Entrypoint) == 0:
		return nil, errors.New("the final stage needs USER and ENTRYPOINT")
	case df.OS == "" || df.Arch == "":
		return nil, errors.New("ARG TARGETOS and TARGETARCH need defaults")
	}
	return df, nil
}
