package deploy

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/usagemeter/usagemeter/config"
	plugin "github.com/usagemeter/usagemeter/plugin/pkg/usagemeter"
)

var kustomizeRoots = []string{"kubernetes/base", "kubernetes/overlays/cluster", "kubernetes/overlays/replicated"}

const (
	retention  = "-retentionPeriod=400d"
	vmselectRO = "http://vmselect:8481/select/0/prometheus"
	vminsertRW = "http://vminsert:8480/insert/0/prometheus"
)

// TestKubernetesManifests decodes every object of every kustomization strictly into its
// k8s.io/api type, checks every referenced file and patch target exists, checks references
// between objects, and that no manifest under deploy/kubernetes is left out of a kustomization.
func TestKubernetesManifests(t *testing.T) {
	used := map[string]bool{}
	for _, root := range kustomizeRoots {
		r, err := resolve(root)
		if err != nil {
			t.Errorf("%s: %v", root, err)
			continue
		}
		if len(r.objects) == 0 {
			t.Errorf("%s produces nothing", root)
		}
		for _, err := range crossCheck(r.objects) {
			t.Errorf("%s: %v", root, err)
		}
		for _, f := range r.files {
			used[filepath.Clean(f)] = true
		}
	}
	err := filepath.WalkDir("kubernetes", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml", ".json":
			if !used[filepath.Clean(path)] {
				t.Errorf("deploy/%s is not referenced by any kustomization", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestClusterOverlayWiring: the overlay replaces single-node VictoriaMetrics, writes through
// vminsert and reads through vmselect, and addresses every vmstorage replica.
func TestClusterOverlayWiring(t *testing.T) {
	r, err := resolve("kubernetes/overlays/cluster")
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"apps/v1/StatefulSet/victoriametrics", "v1/Service/victoriametrics"} {
		if _, ok := r.objects[gone]; ok {
			t.Errorf("the cluster overlay still has %s", gone)
		}
	}
	for _, want := range []string{"apps/v1/StatefulSet/vmstorage", "apps/v1/Deployment/vminsert", "apps/v1/Deployment/vmselect", "apps/v1/Deployment/vmagent"} {
		if _, ok := r.objects[want]; !ok {
			t.Errorf("the cluster overlay lacks %s", want)
		}
	}
	storage := r.objects["apps/v1/StatefulSet/vmstorage"].typed.(*appsv1.StatefulSet)
	replicas := int(*storage.Spec.Replicas)
	for _, c := range []struct{ name, port string }{{"vminsert", "8400"}, {"vmselect", "8401"}} {
		var nodes []string
		for i := range replicas {
			nodes = append(nodes, "vmstorage-"+strconv.Itoa(i)+".vmstorage:"+c.port)
		}
		want := "-storageNode=" + strings.Join(nodes, ",")
		if args := containerArgs(r.objects["apps/v1/Deployment/"+c.name], c.name); !slices.Contains(args, want) {
			t.Errorf("%s args %v: want %s (every vmstorage replica)", c.name, args, want)
		}
	}
	if args := containerArgs(r.objects["apps/v1/Deployment/vmagent"], "vmagent"); !slices.Contains(args, "-remoteWrite.url="+vminsertRW+"/api/v1/write") {
		t.Errorf("vmagent does not write to vminsert: %v", args)
	}

	// The patches, as kustomize will merge them (containers by name, args replaced whole).
	patch := func(file string) object {
		objs, err := decodeFile(filepath.Join("kubernetes/overlays/cluster", file), true)
		if err != nil {
			t.Fatal(err)
		}
		return objs[0]
	}
	vmalert := containerArgs(patch("vmalert-cluster.yaml"), "vmalert")
	for _, want := range []string{"-datasource.url=" + vmselectRO, "-remoteRead.url=" + vmselectRO, "-remoteWrite.url=" + vminsertRW} {
		if !slices.Contains(vmalert, want) {
			t.Errorf("vmalert in the cluster overlay: want %s in %v", want, vmalert)
		}
	}
	// vmalert's patch replaces the base's args: it must keep every flag the base sets.
	for _, a := range containerArgs(r.objects["apps/v1/Deployment/vmalert"], "vmalert") {
		flagName, _, _ := strings.Cut(a, "=")
		if !slices.ContainsFunc(vmalert, func(b string) bool { return strings.HasPrefix(b, flagName+"=") }) {
			t.Errorf("the cluster overlay's vmalert drops the base's %s", flagName)
		}
	}
	if v, _ := containerEnv(patch("grafana-cluster.yaml"), "grafana", "USAGEMETER_VM_URL"); v != vmselectRO {
		t.Errorf("Grafana (datasource and plugin) in the cluster overlay read %q, want vmselect %s", v, vmselectRO)
	}
}

// TestRetentionIsConsistent: every VictoriaMetrics that stores data keeps the same 400 days, on
// Kubernetes (both installs) and in compose.
func TestRetentionIsConsistent(t *testing.T) {
	seen := 0
	for _, root := range kustomizeRoots {
		r, err := resolve(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range r.objects {
			tmpl, _ := podSpecOf(o)
			if tmpl == nil {
				continue
			}
			for _, c := range tmpl.Spec.Containers {
				if strings.Contains(c.Image, "victoria-metrics:") || strings.Contains(c.Image, "vmstorage:") {
					seen++
					if !slices.Contains(c.Args, retention) {
						t.Errorf("%s: %s %s runs without %s: %v", root, o.key(), c.Name, retention, c.Args)
					}
				}
			}
		}
	}
	cf := loadCompose(t, composeFile)
	vm := cf.Services["victoriametrics"]
	seen++
	if !slices.Contains(vm.Command, retention) {
		t.Errorf("compose victoriametrics runs without %s: %v", retention, vm.Command)
	}
	if seen < 3 {
		t.Errorf("found %d VictoriaMetrics storage containers, want single-node (base, compose) and vmstorage (cluster)", seen)
	}
}

// TestExporterCatalogueLoads: the exporter's ConfigMap holds a catalogue the exporter accepts.
func TestExporterCatalogueLoads(t *testing.T) {
	cfg, err := config.Load("kubernetes/base/config/catalogue.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Plans) == 0 {
		t.Error("the catalogue has no plans")
	}
}

// TestScrapeConfigsScrapeTheExporter: rules/exporter.yml alerts on up{job="usage-exporter"}; each
// scrape config must have that job, aimed at the exporter.
func TestScrapeConfigsScrapeTheExporter(t *testing.T) {
	for _, f := range []struct{ path, target string }{
		{"compose/scrape.yml", "exporter:9477"},
		{"kubernetes/base/config/scrape.yml", "usage-exporter-0.usage-exporter:9477"},
		{"kubernetes/overlays/cluster/scrape.yml", "usage-exporter-0.usage-exporter:9477"},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		var sc struct {
			Global        map[string]string `json:"global"`
			ScrapeConfigs []struct {
				JobName       string `json:"job_name"`
				StaticConfigs []struct {
					Targets []string `json:"targets"`
				} `json:"static_configs"`
			} `json:"scrape_configs"`
		}
		if err := yaml.UnmarshalStrict(data, &sc); err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		found := false
		for _, j := range sc.ScrapeConfigs {
			if j.JobName == "usage-exporter" && len(j.StaticConfigs) > 0 && slices.Contains(j.StaticConfigs[0].Targets, f.target) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no job usage-exporter scraping %s", f.path, f.target)
		}
	}
}

// TestKustomizeBuild renders both installs with `kubectl kustomize` (when kubectl is installed)
// and decodes every rendered object strictly: what kustomize makes of the patches, the
// generators and the labels is checked too.
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH: the rendered output is not checked (the sources are, above)")
	}
	for _, root := range kustomizeRoots {
		cmd := exec.Command(kubectl, "kustomize", root)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr // warnings stay out of the YAML
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("kubectl kustomize %s: %v\n%s", root, err, stderr.Bytes())
			continue
		}
		objs, err := decodeDocs(root+" (rendered)", out, false)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		byKey := map[string]object{}
		for _, o := range objs {
			byKey[o.key()] = o
		}
		for _, err := range crossCheck(byKey) {
			t.Errorf("%s (rendered): %v", root, err)
		}
		if strings.HasSuffix(root, "cluster") {
			var vmalert object
			for _, o := range objs {
				if o.kind == "apps/v1/Deployment" && o.name == "vmalert" {
					vmalert = o
				}
				if o.name == "victoriametrics" && o.kind != "v1/ConfigMap" {
					t.Errorf("rendered cluster overlay still has %s", o.key())
				}
			}
			if args := containerArgs(vmalert, "vmalert"); !slices.Contains(args, "-datasource.url="+vmselectRO) {
				t.Errorf("rendered vmalert args %v do not read vmselect", args)
			}
		}
	}
}

// TestManifestValidationCatchesBrokenDocuments: each broken document must be refused.
func TestManifestValidationCatchesBrokenDocuments(t *testing.T) {
	good := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
spec:
  replicas: 1
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      containers:
        - name: demo
          image: demo:1
          ports: [{name: http, containerPort: 80}]
          readinessProbe: {httpGet: {path: /, port: http}}
`
	if _, err := decodeDocs("good", []byte(good), false); err != nil {
		t.Fatalf("the valid document is refused: %v", err)
	}
	for _, c := range []struct{ name, doc, want string }{
		{"unknown field", strings.Replace(good, "replicas: 1", "replica: 1", 1), `unknown field "replica"`},
		{"misplaced field", strings.Replace(good, "          image: demo:1", "          image: demo:1\n          imagePullPolicy: Always\n          mountPath: /x", 1), "unknown field"},
		{"wrong type", strings.Replace(good, "replicas: 1", "replicas: one", 1), "replicas"},
		{"duplicate key", strings.Replace(good, "replicas: 1", "replicas: 1\n  replicas: 2", 1), "replicas"},
		{"unknown kind", strings.Replace(good, "kind: Deployment", "kind: Deploymnet", 1), "unknown apiVersion/kind"},
		{"wrong apiVersion", strings.Replace(good, "apps/v1", "apps/v1beta9", 1), "unknown apiVersion/kind"},
		{"no name", strings.Replace(good, "  name: demo\n", "", 1), "without metadata.name"},
		{"selector mismatch", strings.Replace(good, "labels: {app: demo}", "labels: {app: other}", 1), "does not match"},
		{"no image", strings.Replace(good, "image: demo:1", "imagePullPolicy: Always", 1), "has no image"},
		{"undeclared volume", strings.Replace(good, "          image: demo:1", "          image: demo:1\n          volumeMounts: [{name: data, mountPath: /data}]", 1), "neither a volume"},
		{"probe on an undeclared port", strings.Replace(good, "port: http}", "port: web}", 1), `probes port "web"`},
		{"$patch outside a patch", "$patch: delete\n" + good, "not a patch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeDocs("broken", []byte(c.doc), false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}

	for _, c := range []struct{ name, doc, want string }{
		{"misspelt key", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresource: [a.yaml]\n", `unknown field "resource"`},
		{"not a kustomization", "apiVersion: v1\nkind: ConfigMap\n", "is not kustomize"},
	} {
		t.Run("kustomization "+c.name, func(t *testing.T) {
			_, err := parseKustomization("kustomization.yaml", []byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}

	// Whole kustomizations on disk: a missing resource, a patch of nothing, a generator file that
	// is not there, a replace of a ConfigMap no base generates, a mount of an undefined ConfigMap.
	write := func(t *testing.T, files map[string]string) string {
		dir := t.TempDir()
		for name, content := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	const kHead = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	withVolume := strings.Replace(good, "          readinessProbe", "          volumeMounts: [{name: cfg, mountPath: /etc/demo}]\n          readinessProbe", 1) +
		"      volumes: [{name: cfg, configMap: {name: demo-config}}]\n"
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"missing resource", map[string]string{"kustomization.yaml": kHead + "resources: [demo.yaml, gone.yaml]\n", "demo.yaml": good}, "gone.yaml"},
		{"patch of nothing", map[string]string{
			"kustomization.yaml": kHead + "resources: [demo.yaml]\npatches: [{path: p.yaml}]\n", "demo.yaml": good,
			"p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: other}\nspec: {replicas: 2}\n"}, "does not have"},
		{"broken patch", map[string]string{
			"kustomization.yaml": kHead + "resources: [demo.yaml]\npatches: [{path: p.yaml}]\n", "demo.yaml": good,
			"p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: demo}\nspec: {replicaz: 2}\n"}, "unknown field"},
		{"missing generator file", map[string]string{
			"kustomization.yaml": kHead + "configMapGenerator: [{name: c, files: [gone.yml]}]\n"}, "gone.yml"},
		{"replace without a base", map[string]string{
			"kustomization.yaml": kHead + "configMapGenerator: [{name: c, behavior: replace, files: [c.yml]}]\n", "c.yml": "x: 1\n"}, "no base generates it"},
		{"undefined ConfigMap", map[string]string{"kustomization.yaml": kHead + "resources: [demo.yaml]\n", "demo.yaml": withVolume}, "ConfigMap demo-config"},
		{"service selecting nothing", map[string]string{"kustomization.yaml": kHead + "resources: [demo.yaml, svc.yaml]\n", "demo.yaml": good,
			"svc.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: demo}\nspec: {selector: {app: dmeo}, ports: [{port: 80}]}\n"}, "no pod template has"},
	} {
		t.Run("kustomize "+c.name, func(t *testing.T) {
			dir := write(t, c.files)
			r, err := resolve(dir)
			if err == nil {
				errs := crossCheck(r.objects)
				if len(errs) > 0 {
					err = errs[0]
				}
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestGrafanaProvisioning: the provisioned datasources are the types the dashboards expect, and
// the dashboards provider reads the directory compose and Kubernetes mount the JSON into.
func TestGrafanaProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name           string            `json:"name"`
			UID            string            `json:"uid"`
			Type           string            `json:"type"`
			Access         string            `json:"access"`
			URL            string            `json:"url,omitempty"`
			IsDefault      bool              `json:"isDefault,omitempty"`
			Editable       bool              `json:"editable"`
			JSONData       map[string]any    `json:"jsonData,omitempty"`
			SecureJSONData map[string]string `json:"secureJsonData,omitempty"`
		} `json:"datasources"`
	}
	data, err := os.ReadFile("grafana/provisioning/datasources/usagemeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Grafana expands $VAR and ${VAR} in the values (not the comments) from its environment;
	// every variable used must be one the installs set.
	var values []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			values = append(values, l)
		}
	}
	data = []byte(strings.Join(values, "\n"))
	env := map[string]string{
		"USAGEMETER_VM_URL":       "http://vmselect:8481/select/0/prometheus",
		"USAGEMETER_EXPORTER_URL": "http://usage-exporter:9477",
		"USAGEMETER_API_TOKEN":    "token",
	}
	data = []byte(os.Expand(string(data), func(k string) string {
		v, ok := env[k]
		if !ok {
			t.Errorf("the datasources use ${%s}, which no install sets", k)
		}
		return v
	}))
	if err := yaml.UnmarshalStrict(data, &ds); err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for _, d := range ds.Datasources {
		types[d.Type] = true
		if d.Type != plugin.PluginID {
			continue
		}
		// The plugin's own settings loader accepts what is provisioned.
		jd, err := json.Marshal(d.JSONData)
		if err != nil {
			t.Fatal(err)
		}
		st, err := plugin.LoadSettings(backend.DataSourceInstanceSettings{JSONData: jd, DecryptedSecureJSONData: d.SecureJSONData})
		if err != nil {
			t.Errorf("the plugin refuses the provisioned settings: %v", err)
		}
		if st.ExporterURL != env["USAGEMETER_EXPORTER_URL"] || st.VictoriaMetricsURL != env["USAGEMETER_VM_URL"] || st.Token != "token" {
			t.Errorf("the plugin reads exporter %q, VictoriaMetrics %q, token %q from the provisioned settings", st.ExporterURL, st.VictoriaMetricsURL, st.Token)
		}
		if len(st.RoleMappings) == 0 {
			t.Error("no role mappings provisioned: every Grafana user would be refused")
		}
	}
	for _, want := range []string{"prometheus", plugin.PluginID} {
		if !types[want] {
			t.Errorf("no %s datasource provisioned", want)
		}
	}

	var prov struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name                  string `json:"name"`
			Folder                string `json:"folder"`
			FolderUID             string `json:"folderUid"`
			Type                  string `json:"type"`
			DisableDeletion       bool   `json:"disableDeletion"`
			AllowUIUpdates        bool   `json:"allowUiUpdates"`
			UpdateIntervalSeconds int    `json:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `json:"path"`
				FoldersFromFilesStructure bool   `json:"foldersFromFilesStructure"`
			} `json:"options"`
		} `json:"providers"`
	}
	data, err = os.ReadFile("grafana/provisioning/dashboards/usagemeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Providers) != 1 {
		t.Fatalf("want one dashboard provider, got %d", len(prov.Providers))
	}
	path := prov.Providers[0].Options.Path
	cf := loadCompose(t, composeFile)
	if !slices.Contains(cf.Services["grafana"].Volumes, "../../dashboards/json:"+path+":ro") {
		t.Errorf("compose does not mount dashboards/json at %s", path)
	}
	grafanaManifest, err := os.ReadFile("kubernetes/base/grafana.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(grafanaManifest, []byte("mountPath: "+path+"\n")) {
		t.Errorf("the Grafana Deployment does not mount the dashboards at %s", path)
	}
}
