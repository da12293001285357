package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestStaticBuild: the Dockerfile's final stage is distroless/static, which
// has no libc, so the manager must be a static binary. No Docker engine runs
// here; the test runs the Dockerfile's own build line and checks the ELF.
func TestStaticBuild(t *testing.T) {
	root := repoRoot(t)
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RUN CGO_ENABLED=0 GOOS=\$\{TARGETOS\} GOARCH=\$\{TARGETARCH\} go build .* -o /manager \./cmd$`).FindStringSubmatch(string(dockerfile))
	if m == nil {
		t.Fatal("the Dockerfile has no `RUN CGO_ENABLED=0 ... go build ... -o /manager ./cmd` line")
	}
	for _, want := range []string{"FROM gcr.io/distroless/static:nonroot", "USER 65532:65532", `ENTRYPOINT ["/manager"]`} {
		if !strings.Contains(string(dockerfile), want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	// The Dockerfile's line as the build stage's shell runs it, with the
	// build arguments' defaults and the output moved here.
	out := filepath.Join(t.TempDir(), "manager")
	line := strings.NewReplacer("${TARGETOS}", "linux", "${TARGETARCH}", "amd64", "-o /manager", "-o "+out).Replace(strings.TrimPrefix(m[0], "RUN "))
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the manager needs a dynamic loader; distroless/static has none")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the manager links %v; distroless/static has none", libs)
	}
}
