// Package policies holds the Rego policies (OPA v1 syntax) that decide every request and every
// quota admission. They are embedded so the exporter runs without any file beside it; an
// operator can replace them with a directory or a bundle (see exporter/authz).
package policies

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"
)

// Queries evaluated by exporter/authz. Both are objects, so a policy that forgets a field is
// caught when the answer is decoded rather than silently read as "deny".
const (
	AuthzQuery = "data.usagemeter.authz.decision"
	QuotaQuery = "data.usagemeter.quota.decision"
)

//go:embed *.rego
var files embed.FS

// Modules returns the runtime policy modules, file name to source. The *_test.rego files are
// embedded too (go:embed cannot exclude them) but are left out here: tests are not policy.
func Modules() (map[string]string, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded policies: %w", err)
	}
	mods := make(map[string]string, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !IsRuntimeModule(name) {
			continue
		}
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read embedded policy %s: %w", name, err)
		}
		mods[name] = string(b)
	}
	return mods, nil
}

// IsRuntimeModule reports whether a file name is a policy to load (not a policy test).
func IsRuntimeModule(name string) bool {
	return strings.HasSuffix(name, ".rego") && !strings.HasSuffix(name, "_test.rego")
}
