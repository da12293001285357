// Package argocd holds the Argo CD health checks of the four kinds, in Argo
// CD's resource_customizations/<group>/<kind>/health.lua layout. This test
// runs each check's health_test.yaml cases the way Argo CD does: the object
// as the Lua table `obj`, in gopher-lua, the interpreter Argo CD embeds.
package argocd

import (
	"os"
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

type healthTests struct {
	Tests []struct {
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

func TestHealthChecks(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("resource_customizations", "privateapps.dev", "*"))
	if err != nil || len(dirs) != 4 {
		t.Fatalf("want a health check for each of the 4 kinds, found %v (%v)", dirs, err)
	}
	for _, dir := range dirs {
		script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var cases healthTests
		if err := yaml.UnmarshalStrict(raw, &cases); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if len(cases.Tests) == 0 {
			t.Fatalf("%s has no test cases", dir)
		}
		for _, tc := range cases.Tests {
			t.Run(filepath.Base(dir)+"/"+tc.InputPath, func(t *testing.T) {
				in, err := os.ReadFile(filepath.Join(dir, tc.InputPath))
				if err != nil {
					t.Fatal(err)
				}
				var obj map[string]any
				if err := yaml.Unmarshal(in, &obj); err != nil {
					t.Fatal(err)
				}
				status, message := runHealth(t, string(script), obj)
				if status != tc.HealthStatus.Status || message != tc.HealthStatus.Message {
					t.Fatalf("health = %s %q, want %s %q", status, message, tc.HealthStatus.Status, tc.HealthStatus.Message)
				}
				switch status {
				case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
				default:
					t.Fatalf("%q is not an Argo CD health status", status)
				}
			})
		}
	}
}

func runHealth(t *testing.T, script string, obj map[string]any) (string, string) {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	// The libraries Argo CD opens for resource customizations.
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		t.Fatalf("health.lua: %v", err)
	}
	hs, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %s, want a table", l.Get(-1).Type())
	}
	return lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message"))
}

// toLua turns decoded YAML into Lua values as Argo CD does: maps and lists
// become tables (lists indexed from 1).
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := l.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(l, e))
		}
		return t
	case []any:
		t := l.NewTable()
		for _, e := range v {
			t.Append(toLua(l, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	default:
		panic("unexpected YAML value")
	}
}
