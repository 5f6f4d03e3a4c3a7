package deploy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// kustomize loads no file from outside a kustomization's directory, so the base carries copies
// of the rules, the generated dashboards, the Alertmanager config and the Grafana provisioning.
// This test keeps them equal to their sources; `go test ./deploy -run TestKustomizeCopies
// -update` (run by `make dashboards`) refreshes them.
var update = flag.Bool("update", false, "refresh deploy/kubernetes/base's copies of rules, dashboards and configs")

const base = "kubernetes/base"

type copySet struct {
	// glob of sources (relative to deploy/) and the directory they are copied into, or a single
	// file and its copy.
	srcGlob, dstDir string
	src, dst        string
}

var copies = []copySet{
	{srcGlob: "../rules/*.yml", dstDir: base + "/rules"},
	{srcGlob: "../dashboards/json/*.json", dstDir: base + "/dashboards"},
	{src: "alertmanager/alertmanager.yml", dst: base + "/config/alertmanager.yml"},
	{src: "grafana/provisioning/datasources/usagemeter.yaml", dst: base + "/grafana/datasources.yaml"},
	{src: "grafana/provisioning/dashboards/usagemeter.yaml", dst: base + "/grafana/dashboards.yaml"},
}

// pairs expands the copy sets into (source, copy) pairs, and lists stray files in the copy
// directories that have no source any more.
func pairs(t *testing.T) (out [][2]string, stray []string) {
	t.Helper()
	for _, c := range copies {
		if c.srcGlob == "" {
			out = append(out, [2]string{c.src, c.dst})
			continue
		}
		srcs, err := filepath.Glob(c.srcGlob)
		if err != nil {
			t.Fatal(err)
		}
		if len(srcs) == 0 {
			t.Fatalf("no sources match %s", c.srcGlob)
		}
		var names []string
		for _, s := range srcs {
			names = append(names, filepath.Base(s))
			out = append(out, [2]string{s, filepath.Join(c.dstDir, filepath.Base(s))})
		}
		have, _ := filepath.Glob(filepath.Join(c.dstDir, "*"+filepath.Ext(c.srcGlob)))
		for _, h := range have {
			if !slices.Contains(names, filepath.Base(h)) {
				stray = append(stray, h)
			}
		}
	}
	return out, stray
}

func TestKustomizeCopiesAreCurrent(t *testing.T) {
	ps, stray := pairs(t)
	for _, p := range ps {
		want, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p[1])
		if err == nil && bytes.Equal(got, want) {
			continue
		}
		if *update {
			if err := os.MkdirAll(filepath.Dir(p[1]), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p[1], want, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("refreshed %s", p[1])
			continue
		}
		t.Errorf("deploy/%s differs from deploy/%s: run `make dashboards` (it refreshes the copies)", p[1], p[0])
	}
	for _, s := range stray {
		if *update {
			if err := os.Remove(s); err != nil {
				t.Fatal(err)
			}
			t.Logf("removed %s", s)
			continue
		}
		t.Errorf("deploy/%s has no source any more: run `make dashboards`", s)
	}
}

// TestGeneratorsListEveryCopy: a rule file or dashboard added to its source must also reach its
// ConfigMap, not just the copy directory.
func TestGeneratorsListEveryCopy(t *testing.T) {
	k, err := readKustomization(filepath.Join(base, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			listed[filepath.Join(base, fileOfGeneratorEntry(f))] = true
		}
	}
	ps, _ := pairs(t)
	for _, p := range ps {
		if !listed[p[1]] {
			t.Errorf("deploy/%s is in no configMapGenerator of deploy/%s/kustomization.yaml", p[1], base)
		}
	}
}
