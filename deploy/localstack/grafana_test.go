package localstack

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestGrafanaProvisioningForTheStack(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "dist")
	os.MkdirAll(plugin, 0o755)
	s := &Stack{cfg: Config{StateDir: dir, Grafana: &Grafana{Binary: "/opt/grafana/bin/grafana", HomePath: "/opt/grafana", PluginDir: plugin, Dashboards: "/repo/dashboards/json"}},
		Logs: filepath.Join(dir, "logs"),
		URLs: URLs{Exporter: "http://127.0.0.1:19477", VictoriaMetrics: "http://127.0.0.1:18428", Grafana: "http://127.0.0.1:13000"}}
	p, err := s.grafanaProcess(13000)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Args, []string{"server", "--homepath=/opt/grafana"}) || p.ReadyURL != "http://127.0.0.1:13000/api/health" {
		t.Errorf("process %+v", p)
	}
	for _, want := range []string{"GF_SERVER_HTTP_ADDR=127.0.0.1", "GF_SERVER_HTTP_PORT=13000", "GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS=" + PluginID} {
		if !slices.Contains(p.Env, want) {
			t.Errorf("env lacks %s: %v", want, p.Env)
		}
	}
	var ds struct {
		Datasources []struct {
			Type, URL string
			JSONData  map[string]any `yaml:"jsonData"`
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "grafana", "provisioning", "datasources", "usagemeter.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.Datasources) != 2 || ds.Datasources[0].URL != "http://127.0.0.1:18428" || ds.Datasources[1].Type != PluginID || ds.Datasources[1].JSONData["exporterUrl"] != "http://127.0.0.1:19477" || ds.Datasources[1].JSONData["roleMappings"] == nil {
		t.Errorf("datasources %+v", ds)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "grafana", "provisioning", "dashboards", "usagemeter.yml"))
	if !strings.Contains(string(b), "path: /repo/dashboards/json") {
		t.Errorf("dashboards provider:\n%s", b)
	}
	if target, err := os.Readlink(filepath.Join(dir, "grafana", "plugins", PluginID)); err != nil || target != plugin {
		t.Errorf("plugin link %q %v", target, err)
	}
	// A second start re-links instead of failing.
	if _, err := s.grafanaProcess(13000); err != nil {
		t.Errorf("second start: %v", err)
	}
}

func TestFindGrafana(t *testing.T) {
	none := func(string) (string, error) { return "", errors.New("not found") }
	t.Setenv("GRAFANA_HOME", "")
	if g := FindGrafana(none); g != nil {
		t.Errorf("found %+v with nothing installed", g)
	}
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "bin"), 0o755)
	os.WriteFile(filepath.Join(home, "bin", "grafana-server"), []byte("#!/bin/sh\n"), 0o755)
	t.Setenv("GRAFANA_HOME", home)
	if g := FindGrafana(none); g == nil || g.Binary != filepath.Join(home, "bin", "grafana-server") || g.HomePath != home {
		t.Errorf("GRAFANA_HOME: %+v", g)
	}
	t.Setenv("GRAFANA_HOME", "")
	onPath := func(b string) (string, error) {
		if b == "grafana" {
			return "/usr/sbin/grafana", nil
		}
		return "", errors.New("no")
	}
	if g := FindGrafana(onPath); g == nil || g.Binary != "/usr/sbin/grafana" || g.HomePath != "/usr/share/grafana" {
		t.Errorf("PATH: %+v", g)
	}
}
