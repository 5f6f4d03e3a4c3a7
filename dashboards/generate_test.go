package dashboards

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// TestCommittedJSONIsFresh fails when the generator was edited without regenerating: the JSON
// Grafana provisions must be what the Go code says.
func TestCommittedJSONIsFresh(t *testing.T) {
	want, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join("json", name))
		if err != nil {
			t.Errorf("%s: %v (run `make dashboards` and commit the result)", name, err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("json/%s is stale: run `make dashboards` and commit the result", name)
		}
	}
	committed, err := filepath.Glob(filepath.Join("json", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range committed {
		if _, ok := want[filepath.Base(p)]; !ok {
			t.Errorf("%s is not generated any more: run `make dashboards` (it removes it)", p)
		}
	}
}

// TestRenderIsDeterministic: a generator whose output changes between runs would make the
// staleness check flaky.
func TestRenderIsDeterministic(t *testing.T) {
	a, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	for name := range a {
		if !bytes.Equal(a[name], b[name]) {
			t.Errorf("%s differs between two renders", name)
		}
	}
}

// TestWriteRemovesDashboardsNoLongerGenerated: a renamed dashboard must not stay provisioned.
func TestWriteRemovesDashboardsNoLongerGenerated(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "renamed-away.json")
	if err := os.WriteFile(stale, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dir, "README.md")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale dashboard still there (err %v)", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a non-JSON file was removed: %v", err)
	}
	var got []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		got = append(got, e.Name())
	}
	for _, s := range All() {
		if !slices.Contains(got, s.File) {
			t.Errorf("%s not written", s.File)
		}
	}
}

// TestGeneratorRefusesIncompletePanels: the linter's rules are also enforced when building, so
// a panel without a unit cannot even be generated.
func TestGeneratorRefusesIncompletePanels(t *testing.T) {
	for _, p := range []panel{
		{title: "t", desc: "d", targets: []target{q("up", "")}},
		{title: "t", unit: "short", targets: []target{q("up", "")}},
		{desc: "d", unit: "short", targets: []target{q("up", "")}},
		{title: "t", desc: "d", unit: "short"},
		{title: "t", desc: "d", unit: "short", targets: []target{q("up", ""), pq(PluginQuery{QueryType: "audit"})}},
		{title: "t", desc: "d", unit: "short", targets: []target{pq(PluginQuery{QueryType: "revenue"})}},
	} {
		if _, err := board("x", "x", "x", nil, vars(true), row{"r", []panel{p}}); err == nil {
			t.Errorf("panel %+v was built", p)
		}
	}
	if _, err := board("x", "x", "x", nil, vars(true), row{"r", []panel{{title: "t", desc: "d", unit: "short", targets: []target{q("up", "")}}}}); err != nil {
		t.Errorf("a complete panel was refused: %v", err)
	}
}

// TestCommittedJSONDecodesStrictly reads every committed dashboard back with the SDK's strict
// decoder (unknown or misplaced fields fail) and its validation, the plugin's targets through
// their own strict decoder.
func TestCommittedJSONDecodesStrictly(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	cog.NewRuntime().RegisterDataqueryVariant(PluginQueryVariantConfig())
	files, err := filepath.Glob(filepath.Join("json", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard.Dashboard
		if err := sdkErr(d.UnmarshalJSONStrict(data)); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if err := sdkErr(d.Validate()); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for name, breakIt := range map[string]func([]byte) []byte{
		"misspelt dashboard field": func(b []byte) []byte { return bytes.Replace(b, []byte(`"title"`), []byte(`"titel"`), 1) },
		"unknown plugin query": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"queryType": "audit"`), []byte(`"queryType": "revenue"`), 1)
		},
		"unknown plugin field": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"queryType": "audit"`), []byte(`"queryTyp": "audit"`), 1)
		},
	} {
		orig := mustRead(t, filepath.Join("json", "compliance.json"))
		broken := breakIt(orig)
		if bytes.Equal(broken, orig) {
			t.Fatalf("%s: nothing to break", name)
		}
		var d dashboard.Dashboard
		if err := sdkErr(d.UnmarshalJSONStrict(broken)); err == nil {
			t.Errorf("%s: decodes strictly", name)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sdkErr undoes a quirk of the SDK: its strict decoder returns an empty cog.BuildErrors (a nil
// slice in a non-nil error) on success.
func sdkErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}
