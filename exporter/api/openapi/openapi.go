// Package openapi serves the OpenAPI 3.1 description of the exporter's HTTP API, openapi.json:
// built by package spec from the handlers' own types, committed, and embedded here. Clients for
// any language are generated from the same file (README, "The HTTP API").
package openapi

import (
	_ "embed"
	"net/http"
)

//go:generate go test ./spec -run TestCommittedDocumentIsCurrent -update

//go:embed openapi.json
var document []byte

// Document returns the document's JSON.
func Document() []byte { return document }

// Handler serves the document (GET /v1/openapi.json).
func Handler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(document)
}
