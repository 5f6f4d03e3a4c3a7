package usageapi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedClientIsCurrent: usageapi.gen.go is what the pinned oapi-codegen makes of the
// committed OpenAPI document. After changing the document, run `go generate ./exporter/api/openapi/...`.
func TestGeneratedClientIsCurrent(t *testing.T) {
	bin, err := filepath.Abs(filepath.Join("..", "..", "..", "..", "bin", "tools", "oapi-codegen"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("oapi-codegen"); err != nil {
			t.Skip("oapi-codegen is not installed: run `make tools` (make test does it first)")
		}
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "usageapi.gen.go")
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("output: usageapi.gen.go"), []byte("output: "+out), 1)
	if err := os.WriteFile(filepath.Join(dir, "cfg.yaml"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(bin, "-config", filepath.Join(dir, "cfg.yaml"), filepath.Join("..", "openapi.json")).CombinedOutput(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("usageapi.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("usageapi.gen.go is stale: run `go generate ./exporter/api/openapi/...` and commit it")
	}
}
