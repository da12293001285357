package tokenservice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

func TestDefaultLimitsFollowTheProductTable(t *testing.T) {
	c := DefaultLimits()
	tests := []struct {
		edition string
		addOn   bool
		want    ratelimit.Limits
	}{
		{"free", false, ratelimit.Limits{PerWindow: 100, PerDay: 250_000}},
		{"starter", false, ratelimit.Limits{PerWindow: 100, PerDay: 250_000}},
		{"professional", false, ratelimit.Limits{PerWindow: 150, PerDay: 500_000}},
		{"enterprise", false, ratelimit.Limits{PerWindow: 150, PerDay: 500_000}},
		{"free", true, ratelimit.Limits{PerWindow: 200, PerDay: 1_000_000}},
		{"enterprise", true, ratelimit.Limits{PerWindow: 200, PerDay: 1_000_000}},
		{"", false, ratelimit.Limits{PerWindow: 100, PerDay: 250_000}},
		{"platinum", false, ratelimit.Limits{PerWindow: 100, PerDay: 250_000}},
	}
	for _, tt := range tests {
		if got := c.For(tt.edition, tt.addOn); got != tt.want {
			t.Errorf("For(%q, %v) = %+v, want %+v", tt.edition, tt.addOn, got, tt.want)
		}
	}
}

func TestLoadLimits(t *testing.T) {
	tests := []struct {
		name, file, wantErr string
		edition             string
		want                ratelimit.Limits
	}{
		{name: "override one edition", file: "editions:\n  free: {perTenSeconds: 10, perDay: 1000}\n",
			edition: "free", want: ratelimit.Limits{PerWindow: 10, PerDay: 1000}},
		{name: "add an edition and make it the default", file: "defaultEdition: trial\neditions:\n  trial: {perTenSeconds: 5, perDay: 50}\n",
			edition: "", want: ratelimit.Limits{PerWindow: 5, PerDay: 50}},
		{name: "unknown field", file: "editons: {}\n", wantErr: `unknown field "editons"`},
		{name: "zero limit", file: "editions:\n  free: {perTenSeconds: 0, perDay: 5}\n", wantErr: "must be positive"},
		{name: "unknown default", file: "defaultEdition: gold\n", wantErr: `defaultEdition "gold"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "limits.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadLimits(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.For(tt.edition, false); got != tt.want {
				t.Fatalf("For(%q) = %+v, want %+v", tt.edition, got, tt.want)
			}
		})
	}
}
