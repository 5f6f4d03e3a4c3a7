package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// TestReplicatedOverlayWiring: the cluster-mode overlay (docs/cluster.md) runs three NATS servers
// on different nodes, fsyncing before they acknowledge, with a disruption budget that keeps the
// stream's quorum; and two exporter replicas on different nodes, in cluster mode against every
// NATS server, keeping every flag the base sets.
func TestReplicatedOverlayWiring(t *testing.T) {
	const dir = "kubernetes/overlays/replicated"
	r, err := resolve(dir)
	if err != nil {
		t.Fatal(err)
	}
	nats, ok := r.objects["apps/v1/StatefulSet/nats"]
	if !ok {
		t.Fatal("no NATS StatefulSet")
	}
	ns := nats.typed.(*appsv1.StatefulSet)
	replicas := int(*ns.Spec.Replicas)
	if replicas != 3 {
		t.Errorf("NATS runs %d servers, want 3 (R3 stream)", replicas)
	}
	if !antiAffine(ns.Spec.Template.Spec.Affinity, "nats") {
		t.Error("NATS servers may share a node: want a required pod anti-affinity on the hostname")
	}
	cm, ok := r.objects["v1/ConfigMap/nats-config"]
	if !ok {
		t.Fatal("no nats-config ConfigMap")
	}
	conf := cm.typed.(*corev1.ConfigMap).Data["nats.conf"]
	if !strings.Contains(conf, "sync_interval: always") {
		t.Error("nats.conf does not fsync before acknowledging (sync_interval: always)")
	}
	var urls []string
	for i := range replicas {
		route := "nats://nats-" + string(rune('0'+i)) + ".nats:6222"
		if !strings.Contains(conf, route) {
			t.Errorf("nats.conf lacks the route %s", route)
		}
		urls = append(urls, "nats://nats-"+string(rune('0'+i))+".nats:4222")
	}
	pdb, ok := r.objects["policy/v1/PodDisruptionBudget/nats"]
	if !ok {
		t.Fatal("no PodDisruptionBudget for NATS")
	}
	if mu := pdb.typed.(*policyv1.PodDisruptionBudget).Spec.MaxUnavailable; mu == nil || mu.IntValue() != 1 {
		t.Errorf("NATS disruption budget: maxUnavailable %v, want 1 (two of three keep the quorum)", mu)
	}
	if _, ok := r.objects["policy/v1/PodDisruptionBudget/usage-exporter"]; !ok {
		t.Error("no PodDisruptionBudget for the exporter replicas")
	}

	// The exporter patch, as kustomize merges it (containers by name, args replaced whole).
	objs, err := decodeFile(filepath.Join(dir, "exporter-replicated.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	patch := objs[0]
	sts := patch.typed.(*appsv1.StatefulSet)
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 2 {
		t.Errorf("exporter replicas: %v, want 2", sts.Spec.Replicas)
	}
	if !antiAffine(sts.Spec.Template.Spec.Affinity, "usage-exporter") {
		t.Error("exporter replicas may share a node")
	}
	args := containerArgs(patch, "usage-exporter")
	if want := "--cluster.nats-url=" + strings.Join(urls, ","); !slices.Contains(args, want) {
		t.Errorf("exporter args %v: want %s", args, want)
	}
	for _, a := range containerArgs(r.objects["apps/v1/StatefulSet/usage-exporter"], "usage-exporter") {
		if !slices.Contains(args, a) {
			t.Errorf("the replicated overlay's exporter drops the base's %s", a)
		}
	}
	objs, err = decodeFile(filepath.Join(dir, "victoriametrics-dedup.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	vm := containerArgs(objs[0], "victoriametrics")
	for _, a := range containerArgs(r.objects["apps/v1/StatefulSet/victoriametrics"], "victoriametrics") {
		if !slices.Contains(vm, a) {
			t.Errorf("the replicated overlay's VictoriaMetrics drops the base's %s", a)
		}
	}
	if !slices.ContainsFunc(vm, func(a string) bool { return strings.HasPrefix(a, "-dedup.minScrapeInterval=") }) {
		t.Error("VictoriaMetrics does not deduplicate the replicas' samples")
	}
}

// TestReplicatedScrapeConfig: both replicas are scraped, their ledger metrics under one instance
// (deduplicated), their own metrics apart.
func TestReplicatedScrapeConfig(t *testing.T) {
	data, err := os.ReadFile("kubernetes/overlays/replicated/scrape.yml")
	if err != nil {
		t.Fatal(err)
	}
	var sc struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
			RelabelConfigs []map[string]any `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &sc); err != nil {
		t.Fatal(err)
	}
	jobs := map[string][]string{}
	for _, j := range sc.ScrapeConfigs {
		for _, s := range j.StaticConfigs {
			jobs[j.JobName] = append(jobs[j.JobName], s.Targets...)
		}
		if j.JobName == "usage-exporter" && (len(j.RelabelConfigs) != 1 || j.RelabelConfigs[0]["target_label"] != "instance") {
			t.Errorf("job usage-exporter does not give both replicas one instance label: %v", j.RelabelConfigs)
		}
	}
	for _, job := range []string{"usage-exporter", "usage-exporter-replica"} {
		for _, target := range []string{"usage-exporter-0.usage-exporter:9477", "usage-exporter-1.usage-exporter:9477"} {
			if !slices.Contains(jobs[job], target) {
				t.Errorf("job %s does not scrape %s", job, target)
			}
		}
	}
}

func antiAffine(a *corev1.Affinity, name string) bool {
	if a == nil || a.PodAntiAffinity == nil {
		return false
	}
	for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		if term.TopologyKey == "kubernetes.io/hostname" && term.LabelSelector != nil && term.LabelSelector.MatchLabels["app.kubernetes.io/name"] == name {
			return true
		}
	}
	return false
}
