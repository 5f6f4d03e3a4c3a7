package usagemeter

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

func pluginSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/plugin.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("plugin.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("plugin.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPluginJSON validates src/plugin.json against Grafana's plugin.json schema and checks what
// Grafana needs to start the backend and use it for alerting.
func TestPluginJSON(t *testing.T) {
	s := pluginSchema(t)
	path := filepath.Join(repoRoot(), "plugin", "src", "plugin.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(inst); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var p struct {
		ID, Type, Executable string
		Backend, Alerting    bool
	}
	_ = json.Unmarshal(b, &p)
	if p.ID != PluginID || p.Type != "datasource" || p.Executable != "gpx_usagemeter" || !p.Backend || !p.Alerting {
		t.Errorf("plugin.json: %+v", p)
	}
	// The schema is strict: it must refuse what Grafana would.
	bad := bytes.Replace(b, []byte(`"backend": true`), []byte(`"backend": "yes"`), 1)
	inst, _ = jsonschema.UnmarshalJSON(bytes.NewReader(bad))
	if s.Validate(inst) == nil {
		t.Error("the schema accepted backend: \"yes\"")
	}
}

// TestProvisioningExample: the provisioning example loads as datasource settings the plugin
// accepts (environment placeholders filled in).
func TestProvisioningExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "grafana", "provisioning-plugin", "datasources", "usagemeter.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.NewReplacer("${USAGEMETER_EXPORTER_URL}", "http://usage-exporter:9477", "${USAGEMETER_VM_URL}", "http://vm:8428",
		"${USAGEMETER_API_TOKEN}", "um_x").Replace(string(b)))
	var doc struct {
		Datasources []struct {
			Type           string            `json:"type"`
			JSONData       json.RawMessage   `json:"jsonData"`
			SecureJSONData map[string]string `json:"secureJsonData"`
		} `json:"datasources"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Datasources) != 1 || doc.Datasources[0].Type != PluginID {
		t.Fatalf("datasources: %+v", doc.Datasources)
	}
	st, err := LoadSettingsJSON(doc.Datasources[0].JSONData, doc.Datasources[0].SecureJSONData)
	if err != nil {
		t.Fatal(err)
	}
	if st.Token != "um_x" || st.VictoriaMetricsURL != "http://vm:8428" || len(st.RoleMappings) != 5 {
		t.Errorf("settings: %+v", st)
	}
}
