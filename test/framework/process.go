// Package framework is what the end-to-end tests (test/e2e), the local
// development environment (hack/dev) and the benchmarks (hack/bench-*)
// share to run the operator: its commands built once, each component run
// as a process of its own (as the chart runs each in its own pod), and
// the gateway configurations the documentation gives.
package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The operator's components: each is a command under cmd/.
const (
	Manager      = "manager"
	TokenService = "token-service"
	Insights     = "insights"
	Plugin       = "kubectl-privateapp"
)

// Commands are the operator's built commands, by component.
type Commands struct {
	Dir string
}

// Path is the binary of component.
func (c Commands) Path(component string) string { return filepath.Join(c.Dir, component) }

var (
	buildOnce sync.Map // dir -> *builtDir
)

type builtDir struct {
	once sync.Once
	err  error
}

// Build builds every command of the repository at root into dir, once
// per process and dir: tests that share a dir share the binaries.
func Build(root, dir string) (Commands, error) {
	v, _ := buildOnce.LoadOrStore(dir, &builtDir{})
	b := v.(*builtDir)
	b.once.Do(func() {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = err
			return
		}
		args := []string{"build", "-o", dir + string(filepath.Separator)}
		for _, c := range []string{Manager, TokenService, Insights, Plugin} {
			args = append(args, "./cmd/"+c)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build the commands: %w\n%s", err, out)
		}
	})
	return Commands{Dir: dir}, b.err
}

// Process is one component running as a process, its output appended to
// a log file.
type Process struct {
	// Bin is the command; Args its flags.
	Bin  string
	Args []string
	// Kubeconfig is the cluster it reaches ($KUBECONFIG); Env more
	// variables.
	Kubeconfig string
	Env        []string
	// Log is the file its output goes to.
	Log string
	// Deathsig is sent to it when this process dies (SIGKILL if zero), so
	// that no component outlives a test or a killed hack/dev.
	Deathsig syscall.Signal

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has ended
	err      error         // how it ended, once exited is closed
	logStart int64
}

// Start starts the process; it logs from where the log file ends.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(p.Log), 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(p.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	info, err := logFile.Stat()
	if err != nil {
		return err
	}
	p.logStart = info.Size()
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	if p.Kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+p.Kubeconfig)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	sig := p.Deathsig
	if sig == 0 {
		sig = syscall.SIGKILL
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: sig}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", filepath.Base(p.Bin), err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return nil
}

// Done is closed when the process ends (nil before Start); Err then says
// how it ended.
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// Err is how the process ended, once Done is closed.
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Kill kills the process and waits for it.
func (p *Process) Kill() {
	p.stop(0)
}

// Stop asks the process to end (SIGTERM), kills it after grace, and waits
// for it.
func (p *Process) Stop(grace time.Duration) {
	p.stop(grace)
}

func (p *Process) stop(grace time.Duration) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	if grace > 0 {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return
		case <-time.After(grace):
		}
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Running reports whether the process has started and not ended.
func (p *Process) Running() bool {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Logged reports whether the process, since it last started, has logged a
// line that contains what.
func (p *Process) Logged(what string) bool {
	b, err := os.ReadFile(p.Log)
	return err == nil && int64(len(b)) >= p.logStart && strings.Contains(string(b[p.logStart:]), what)
}

// Pid is the process's id; 0 before Start or after it ended.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
