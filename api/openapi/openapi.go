// Package openapi holds the OpenAPI 3 document of the token service's HTTP
// endpoints (token-service.yaml), which the token service serves and its
// tests check every answer against.
package openapi

import (
	_ "embed"

	"sigs.k8s.io/yaml"
)

// TokenServiceYAML is the document as written.
//
//go:embed token-service.yaml
var TokenServiceYAML []byte

// TokenServiceJSON is the document as JSON.
var TokenServiceJSON = mustJSON(TokenServiceYAML)

func mustJSON(y []byte) []byte {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		panic("api/openapi/token-service.yaml does not parse: " + err.Error())
	}
	return append(j, '\n')
}
