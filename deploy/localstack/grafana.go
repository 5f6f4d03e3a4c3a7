package localstack

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Grafana locates a Grafana installation and what it shows.
type Grafana struct {
	Binary   string // grafana (run as `grafana server`) or grafana-server
	HomePath string // Grafana's home: conf/defaults.ini and public/ live there
	// PluginDir is the built plugin (plugin/dist), loaded unsigned.
	PluginDir string
	// Dashboards is the directory of dashboard JSON files to provision (dashboards/json).
	Dashboards string
}

// PluginID is the usagemeter datasource plugin's id.
const PluginID = "usagemeter-usagemeter-datasource"

// grafanaProcess renders Grafana's provisioning for this stack's URLs into the state directory
// and returns the process to start.
func (s *Stack) grafanaProcess(port int) (Process, error) {
	g := s.cfg.Grafana
	root := s.path("grafana")
	prov := filepath.Join(root, "provisioning")
	for _, d := range []string{filepath.Join(prov, "datasources"), filepath.Join(prov, "dashboards"), filepath.Join(prov, "plugins"),
		filepath.Join(prov, "alerting"), filepath.Join(root, "plugins"), filepath.Join(root, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Process{}, fmt.Errorf("grafana state: %w", err)
		}
	}
	datasources := fmt.Sprintf(`apiVersion: 1
datasources:
  - name: VictoriaMetrics
    uid: victoriametrics
    type: prometheus
    access: proxy
    url: %s
    isDefault: true
  - name: usagemeter
    uid: usagemeter
    type: %s
    jsonData:
      exporterUrl: %s
      victoriaMetricsUrl: %s
      # Grafana users to usagemeter roles, as in deploy/grafana/provisioning: the policies
      # authorize every plugin query with them.
      roleMappings:
        - {orgRole: Admin, roles: [platform_admin]}
        - {orgRole: Editor, roles: [billing_admin, sre]}
        - {orgRole: Viewer, roles: [sre]}
      backgroundRoles: [sre]
`, s.URLs.VictoriaMetrics, PluginID, s.URLs.Exporter, s.URLs.VictoriaMetrics)
	dashboards := fmt.Sprintf(`apiVersion: 1
providers:
  - name: usagemeter
    folder: usagemeter
    type: file
    allowUiUpdates: false
    options:
      path: %s
`, g.Dashboards)
	for name, body := range map[string]string{
		filepath.Join(prov, "datasources", "usagemeter.yml"): datasources,
		filepath.Join(prov, "dashboards", "usagemeter.yml"):  dashboards,
	} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			return Process{}, fmt.Errorf("grafana provisioning: %w", err)
		}
	}
	// Grafana finds plugins as directories under its plugins path: link the built plugin in.
	link := filepath.Join(root, "plugins", PluginID)
	os.Remove(link)
	if err := os.Symlink(g.PluginDir, link); err != nil {
		return Process{}, fmt.Errorf("linking the plugin: %w", err)
	}
	args := []string{"--homepath=" + g.HomePath}
	if filepath.Base(g.Binary) == "grafana" {
		args = append([]string{"server"}, args...)
	}
	return Process{
		Name: "grafana", Path: g.Binary, Args: args,
		Env: []string{
			"GF_SERVER_HTTP_ADDR=127.0.0.1",
			"GF_SERVER_HTTP_PORT=" + strconv.Itoa(port),
			"GF_PATHS_DATA=" + filepath.Join(root, "data"),
			"GF_PATHS_LOGS=" + s.Logs,
			"GF_PATHS_PLUGINS=" + filepath.Join(root, "plugins"),
			"GF_PATHS_PROVISIONING=" + prov,
			"GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS=" + PluginID,
			"GF_ANALYTICS_REPORTING_ENABLED=false",
			"GF_ANALYTICS_CHECK_FOR_UPDATES=false",
			"GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES=false",
			"GF_NEWS_NEWS_FEED_ENABLED=false",
		},
		ReadyURL: s.URLs.Grafana + "/api/health",
	}, nil
}

// FindGrafana looks for Grafana: $GRAFANA_HOME/bin/grafana (or grafana-server), else grafana on
// the PATH with its home in /usr/share/grafana. It returns nil when there is none.
func FindGrafana(lookPath func(string) (string, error)) *Grafana {
	if home := os.Getenv("GRAFANA_HOME"); home != "" {
		for _, b := range []string{"grafana", "grafana-server"} {
			if p := filepath.Join(home, "bin", b); isFile(p) {
				return &Grafana{Binary: p, HomePath: home}
			}
		}
	}
	for _, b := range []string{"grafana", "grafana-server"} {
		if p, err := lookPath(b); err == nil {
			home := os.Getenv("GRAFANA_HOME")
			if home == "" {
				home = "/usr/share/grafana"
			}
			return &Grafana{Binary: p, HomePath: home}
		}
	}
	return nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
