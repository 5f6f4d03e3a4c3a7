package spec

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

var update = flag.Bool("update", false, "write exporter/api/openapi/openapi.json")

var committed = filepath.Join("..", "openapi.json")

// TestCommittedDocumentIsCurrent: the committed document is what the table and the handlers' types
// give today. After changing either, run `go generate ./exporter/api/openapi` (or this test with
// -update) and commit the file.
func TestCommittedDocumentIsCurrent(t *testing.T) {
	want, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(committed, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `go generate ./exporter/api/openapi` and commit it", committed)
	}
}

// TestDocumentIsValidOpenAPI31: the committed document loads and validates as OpenAPI 3.1 (every
// reference resolves, every schema is well formed).
func TestDocumentIsValidOpenAPI31(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(Routes(doc)); n < 40 {
		t.Errorf("only %d operations", n)
	}
	for _, name := range []string{"UsageResponse", "Details", "Invoice", "Accepted"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("no component schema %s", name)
		}
	}
}
