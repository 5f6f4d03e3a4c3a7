package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

const (
	composeFile = "compose/docker-compose.yml"
	// composeSchema is compose-spec's schema/compose-spec.json, vendored from
	// github.com/compose-spec/compose-go/v2 v2.16.2 (schema/compose-spec.json).
	composeSchema = "compose/compose-spec.json"
)

// composeDoc is the part of a compose file the cross-checks read; the schema checks the rest.
type composeDoc struct {
	Services map[string]struct {
		Image string `json:"image"`
		Build *struct {
			Context    string `json:"context"`
			Dockerfile string `json:"dockerfile"`
		} `json:"build"`
		Command []string `json:"command"`
		Volumes []string `json:"volumes"`
	} `json:"services"`
	Volumes map[string]any `json:"volumes"`
}

func loadCompose(t *testing.T, path string) composeDoc {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c composeDoc
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func compileComposeSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(composeSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", composeSchema, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("compose-spec.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("compose-spec.json")
	if err != nil {
		t.Fatalf("compiling %s: %v", composeSchema, err)
	}
	return s
}

// validateCompose checks a compose document (YAML) against the schema. YAML anchors and merge
// keys are resolved first, as compose does.
func validateCompose(s *jsonschema.Schema, data []byte) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

func TestComposeFileMatchesTheComposeSpec(t *testing.T) {
	s := compileComposeSchema(t)
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateCompose(s, data); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
}

// TestComposeSchemaCatchesBrokenFiles: the schema check refuses what compose would refuse.
func TestComposeSchemaCatchesBrokenFiles(t *testing.T) {
	s := compileComposeSchema(t)
	good := "services:\n  a:\n    image: busybox:1\n    ports: [\"8080:80\"]\n    command: [sleep, \"1\"]\n"
	if err := validateCompose(s, []byte(good)); err != nil {
		t.Fatalf("a valid file is refused: %v", err)
	}
	for name, doc := range map[string]string{
		"unknown service key": strings.Replace(good, "image:", "imagee:", 1),
		"wrong type":          strings.Replace(good, "ports: [\"8080:80\"]", "ports: {http: 80}", 1),
		"unknown top key":     good + "servics: {}\n",
		"misspelt nested key": good + "    healthcheck: {intervall: 5s}\n",
		"volume not a string": good + "    volumes: [42]\n",
	} {
		t.Run(name, func(t *testing.T) {
			if err := validateCompose(s, []byte(doc)); err == nil {
				t.Errorf("accepted:\n%s", doc)
			}
		})
	}
}

// TestComposeReferencesExist: the build context, the Dockerfile and every bind-mounted file or
// directory exist (plugin/dist is built by `make build`: its parent must exist), named volumes
// are declared, images are pinned.
func TestComposeReferencesExist(t *testing.T) {
	c := loadCompose(t, composeFile)
	dir := filepath.Dir(composeFile)
	for name, svc := range c.Services {
		if svc.Image == "" && svc.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		if svc.Image != "" && (!strings.Contains(svc.Image, ":") || strings.HasSuffix(svc.Image, ":latest")) {
			t.Errorf("service %s: image %s is not pinned", name, svc.Image)
		}
		if b := svc.Build; b != nil {
			ctx := filepath.Join(dir, b.Context)
			if _, err := os.Stat(filepath.Join(ctx, "go.mod")); err != nil {
				t.Errorf("service %s: build context %s is not the repository root: %v", name, b.Context, err)
			}
			if _, err := os.Stat(filepath.Join(ctx, b.Dockerfile)); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		}
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("service %s mounts named volume %s, which is not declared", name, src)
				}
				continue
			}
			p := filepath.Join(dir, src)
			if strings.HasSuffix(filepath.ToSlash(p), "plugin/dist") {
				p = filepath.Dir(p)
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("service %s mounts %s: %v", name, src, err)
			}
		}
	}
}
