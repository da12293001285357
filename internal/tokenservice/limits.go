package tokenservice

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

// LimitsConfig is the rate-limit table by edition, as the cluster admin
// configures it (--limits-file). Zero fields take the defaults of DefaultLimits.
type LimitsConfig struct {
	// DefaultEdition applies to namespaces without the edition label.
	DefaultEdition string `json:"defaultEdition,omitempty"`
	// Editions maps an edition to its limits.
	Editions map[string]EditionLimits `json:"editions,omitempty"`
	// APILimitIncrease applies to namespaces labelled with the API add-on,
	// whatever their edition.
	APILimitIncrease *EditionLimits `json:"apiLimitIncrease,omitempty"`
}

// EditionLimits are the limits of one edition.
type EditionLimits struct {
	// PerTenSeconds is the calls per app per 10-second window.
	PerTenSeconds int64 `json:"perTenSeconds"`
	// PerDay is the calls per account (namespace) per UTC day.
	PerDay int64 `json:"perDay"`
}

// DefaultLimits are the rate limits by edition that docs/token-service.md#rate-limits lists.
func DefaultLimits() LimitsConfig {
	return LimitsConfig{
		DefaultEdition: "free",
		Editions: map[string]EditionLimits{
			"free":         {PerTenSeconds: 100, PerDay: 250_000},
			"starter":      {PerTenSeconds: 100, PerDay: 250_000},
			"professional": {PerTenSeconds: 150, PerDay: 500_000},
			"enterprise":   {PerTenSeconds: 150, PerDay: 500_000},
		},
		APILimitIncrease: &EditionLimits{PerTenSeconds: 200, PerDay: 1_000_000},
	}
}

// LoadLimits reads a limits file over the defaults: editions it names replace
// the default ones, and it may add editions.
func LoadLimits(path string) (LimitsConfig, error) {
	cfg := DefaultLimits()
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("reading the limits file: %w", err)
	}
	var file LimitsConfig
	if err := yaml.UnmarshalStrict(b, &file); err != nil {
		return cfg, fmt.Errorf("limits file %s: %w (see docs/token-service.md for its fields)", path, err)
	}
	if file.DefaultEdition != "" {
		cfg.DefaultEdition = file.DefaultEdition
	}
	for name, l := range file.Editions {
		cfg.Editions[name] = l
	}
	if file.APILimitIncrease != nil {
		cfg.APILimitIncrease = file.APILimitIncrease
	}
	return cfg, cfg.validate()
}

func (c LimitsConfig) validate() error {
	if _, ok := c.Editions[c.DefaultEdition]; !ok {
		return fmt.Errorf("defaultEdition %q is not one of the editions", c.DefaultEdition)
	}
	for name, l := range c.Editions {
		if l.PerTenSeconds <= 0 || l.PerDay <= 0 {
			return fmt.Errorf("edition %q: perTenSeconds and perDay must be positive", name)
		}
	}
	if l := c.APILimitIncrease; l != nil && (l.PerTenSeconds <= 0 || l.PerDay <= 0) {
		return fmt.Errorf("apiLimitIncrease: perTenSeconds and perDay must be positive")
	}
	return nil
}

// For returns the limits of a namespace from its edition and add-on labels.
// An unknown edition gets the default edition's limits.
func (c LimitsConfig) For(edition string, apiLimitIncrease bool) ratelimit.Limits {
	if apiLimitIncrease && c.APILimitIncrease != nil {
		return ratelimit.Limits{PerWindow: c.APILimitIncrease.PerTenSeconds, PerDay: c.APILimitIncrease.PerDay}
	}
	l, ok := c.Editions[edition]
	if !ok {
		l = c.Editions[c.DefaultEdition]
	}
	return ratelimit.Limits{PerWindow: l.PerTenSeconds, PerDay: l.PerDay}
}
