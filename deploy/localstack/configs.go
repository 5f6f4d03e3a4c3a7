package localstack

import (
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultSinkBase is the alert sink address written in deploy/alertmanager/alertmanager.yml.
// Webhook URLs starting with it are pointed at the stack's actual sink.
const DefaultSinkBase = "http://127.0.0.1:9099"

// AlertTimings override the route timings of the Alertmanager configuration, for tests that
// cannot wait 30 seconds for a group. Zero fields keep the file's value.
type AlertTimings struct {
	GroupWait, GroupInterval, RepeatInterval time.Duration
}

// scrapeConfig renders VictoriaMetrics' -promscrape.config: the exporter under job
// "usage-exporter" (the name the rules expect) and the stack's own servers.
func scrapeConfig(interval time.Duration, targets map[string]string) ([]byte, error) {
	type staticConfig struct {
		Targets []string `yaml:"targets"`
	}
	type job struct {
		JobName       string         `yaml:"job_name"`
		StaticConfigs []staticConfig `yaml:"static_configs"`
	}
	doc := struct {
		Global struct {
			ScrapeInterval string `yaml:"scrape_interval"`
			ScrapeTimeout  string `yaml:"scrape_timeout"`
		} `yaml:"global"`
		ScrapeConfigs []job `yaml:"scrape_configs"`
	}{}
	doc.Global.ScrapeInterval = interval.String()
	// The timeout may not exceed the interval: with 1s scrapes a 10s default would be refused.
	doc.Global.ScrapeTimeout = interval.String()
	for _, name := range []string{"usage-exporter", "victoria-metrics", "vmalert", "alertmanager"} {
		if addr, ok := targets[name]; ok {
			doc.ScrapeConfigs = append(doc.ScrapeConfigs, job{JobName: name, StaticConfigs: []staticConfig{{Targets: []string{addr}}}})
		}
	}
	return yaml.Marshal(doc)
}

// alertmanagerConfig reads the Alertmanager configuration at path and returns it with every
// webhook URL under DefaultSinkBase moved to sinkBase and, when timings is not nil, the route
// tree's timings replaced. Routing, receivers and inhibitions stay as written, so what a test
// exercises is the file that ships.
func alertmanagerConfig(path, sinkBase string, timings *AlertTimings) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading alertmanager config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	receivers, _ := doc["receivers"].([]any)
	for _, r := range receivers {
		rm, _ := r.(map[string]any)
		hooks, _ := rm["webhook_configs"].([]any)
		for _, h := range hooks {
			hm, _ := h.(map[string]any)
			if u, ok := hm["url"].(string); ok && strings.HasPrefix(u, DefaultSinkBase) {
				hm["url"] = sinkBase + strings.TrimPrefix(u, DefaultSinkBase)
			}
		}
	}
	if timings != nil {
		if route, ok := doc["route"].(map[string]any); ok {
			retime(route, *timings)
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("rendering alertmanager config: %w", err)
	}
	return out, nil
}

// retime sets the timings on a route and every route below it.
func retime(route map[string]any, t AlertTimings) {
	for key, d := range map[string]time.Duration{"group_wait": t.GroupWait, "group_interval": t.GroupInterval, "repeat_interval": t.RepeatInterval} {
		if d > 0 {
			route[key] = d.String()
		}
	}
	children, _ := route["routes"].([]any)
	for _, c := range children {
		if cm, ok := c.(map[string]any); ok {
			retime(cm, t)
		}
	}
}
