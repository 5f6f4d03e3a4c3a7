package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Helpers for validate_test.go: strict decoding of Kubernetes manifests into their k8s.io/api
// types, and a reader of kustomizations that resolves what each one produces.

// kinds maps apiVersion/kind to a new typed object. A kind missing here fails validation: add it
// when a manifest needs it.
var kinds = map[string]func() any{
	"v1/Namespace":                             func() any { return &corev1.Namespace{} },
	"v1/Service":                               func() any { return &corev1.Service{} },
	"v1/ConfigMap":                             func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                func() any { return &corev1.Secret{} },
	"v1/ServiceAccount":                        func() any { return &corev1.ServiceAccount{} },
	"v1/PersistentVolumeClaim":                 func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/StatefulSet":                      func() any { return &appsv1.StatefulSet{} },
	"apps/v1/Deployment":                       func() any { return &appsv1.Deployment{} },
	"apps/v1/DaemonSet":                        func() any { return &appsv1.DaemonSet{} },
	"policy/v1/PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":       func() any { return &networkingv1.NetworkPolicy{} },
	"rbac.authorization.k8s.io/v1/Role":        func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return &rbacv1.RoleBinding{} },
	"batch/v1/CronJob":                         func() any { return &batchv1.CronJob{} },
}

// object is one decoded manifest document.
type object struct {
	file  string
	kind  string // apiVersion/kind
	name  string
	typed any
	// patch is the strategic-merge directive of a patch document ($patch), if any.
	patch string
}

func (o object) key() string { return o.kind + "/" + o.name }

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits a multi-document YAML file, dropping empty documents (comments only).
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSep.Split(string(data), -1) {
		var probe map[string]any
		if err := yaml.Unmarshal([]byte(d), &probe); err == nil && len(probe) == 0 {
			continue
		}
		docs = append(docs, []byte(d))
	}
	return docs
}

// decodeManifest decodes one YAML document strictly into its typed struct: an unknown or
// misspelt field, a wrong type or a duplicate key is an error. isPatch allows the strategic
// merge directive $patch (delete, replace, merge) at the top.
func decodeManifest(file string, doc []byte, isPatch bool) (object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Patch string `json:"$patch"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return object{}, fmt.Errorf("%s: %w", file, err)
	}
	o := object{file: file, kind: head.APIVersion + "/" + head.Kind, name: head.Metadata.Name, patch: head.Patch}
	newObj, ok := kinds[o.kind]
	if !ok {
		return o, fmt.Errorf("%s: unknown apiVersion/kind %q", file, o.kind)
	}
	if o.name == "" {
		return o, fmt.Errorf("%s: %s without metadata.name", file, o.kind)
	}
	if head.Patch != "" {
		if !isPatch {
			return o, fmt.Errorf("%s: $patch in a resource, not a patch", file)
		}
		if !slices.Contains([]string{"delete", "replace", "merge"}, head.Patch) {
			return o, fmt.Errorf("%s: $patch %q is not delete, replace or merge", file, head.Patch)
		}
		// The directive is not a field of the type: remove it before the strict decoding.
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return o, err
		}
		delete(m, "$patch")
		var err error
		if doc, err = yaml.Marshal(m); err != nil {
			return o, err
		}
	}
	o.typed = newObj()
	if err := yaml.UnmarshalStrict(doc, o.typed); err != nil {
		return o, fmt.Errorf("%s: %s %s: %w", file, o.kind, o.name, err)
	}
	if isPatch {
		return o, nil
	}
	if err := checkObject(o); err != nil {
		return o, fmt.Errorf("%s: %s %s: %w", file, o.kind, o.name, err)
	}
	return o, nil
}

// podSpecOf returns the pod template of a workload.
func podSpecOf(o object) (*corev1.PodTemplateSpec, *metav1.LabelSelector) {
	switch w := o.typed.(type) {
	case *appsv1.StatefulSet:
		return &w.Spec.Template, w.Spec.Selector
	case *appsv1.Deployment:
		return &w.Spec.Template, w.Spec.Selector
	case *appsv1.DaemonSet:
		return &w.Spec.Template, w.Spec.Selector
	case *batchv1.CronJob:
		return &w.Spec.JobTemplate.Spec.Template, nil // a Job's pods need no selector
	}
	return nil, nil
}

func selectorLabels(sel *metav1.LabelSelector) map[string]string {
	if sel == nil {
		return nil
	}
	return sel.MatchLabels
}

// checkObject checks what the API server would refuse in a workload on its own: a selector
// that does not match the pod template, containers without an image, mounts of undeclared
// volumes, probes on undeclared named ports.
func checkObject(o object) error {
	tmpl, sel := podSpecOf(o)
	if tmpl == nil {
		return nil
	}
	if _, job := o.typed.(*batchv1.CronJob); !job && (sel == nil || len(sel.MatchLabels) == 0) {
		return fmt.Errorf("no spec.selector.matchLabels")
	}
	for k, v := range selectorLabels(sel) {
		if tmpl.Labels[k] != v {
			return fmt.Errorf("selector %s=%s does not match the pod template's labels %v", k, v, tmpl.Labels)
		}
	}
	volumes := map[string]bool{}
	for _, v := range tmpl.Spec.Volumes {
		volumes[v.Name] = true
	}
	if ss, ok := o.typed.(*appsv1.StatefulSet); ok {
		if ss.Spec.ServiceName == "" {
			return fmt.Errorf("a StatefulSet needs spec.serviceName")
		}
		for _, c := range ss.Spec.VolumeClaimTemplates {
			volumes[c.Name] = true
			if _, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				return fmt.Errorf("volumeClaimTemplate %s requests no storage", c.Name)
			}
		}
	}
	if len(tmpl.Spec.Containers) == 0 {
		return fmt.Errorf("no containers")
	}
	for _, c := range append(slices.Clone(tmpl.Spec.InitContainers), tmpl.Spec.Containers...) {
		if c.Image == "" {
			return fmt.Errorf("container %s has no image", c.Name)
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				return fmt.Errorf("container %s mounts %q, which is neither a volume nor a volumeClaimTemplate", c.Name, m.Name)
			}
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" && !ports[p.HTTPGet.Port.StrVal] {
				return fmt.Errorf("container %s probes port %q, which it does not declare", c.Name, p.HTTPGet.Port.StrVal)
			}
		}
	}
	return nil
}

// kustomization is the subset of kustomize's Kustomization that these manifests use, decoded
// strictly: a misspelt key (resource: for resources:) fails instead of being ignored.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Resources []string `json:"resources,omitempty"`
	Patches   []struct {
		Path string `json:"path,omitempty"`
	} `json:"patches,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
	ConfigMapGenerator []generator `json:"configMapGenerator,omitempty"`
	SecretGenerator    []generator `json:"secretGenerator,omitempty"`
}

type generator struct {
	Name     string   `json:"name"`
	Behavior string   `json:"behavior,omitempty"`
	Files    []string `json:"files,omitempty"`
	Literals []string `json:"literals,omitempty"`
}

func readKustomization(path string) (*kustomization, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKustomization(path, data)
}

func parseKustomization(path string, data []byte) (*kustomization, error) {
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion/kind %s/%s is not kustomize.config.k8s.io/v1beta1/Kustomization", path, k.APIVersion, k.Kind)
	}
	return &k, nil
}

// fileOfGeneratorEntry strips the optional key of a generator entry ("key=path").
func fileOfGeneratorEntry(e string) string {
	if i := strings.Index(e, "="); i >= 0 {
		return e[i+1:]
	}
	return e
}

// resolved is what a kustomization produces, before patches other than deletions: its objects
// by key, and the files it read (to find manifests nobody references).
type resolved struct {
	objects map[string]object
	files   []string
}

// resolve reads the kustomization in dir and, recursively, its bases. It checks every
// referenced file exists, decodes every resource and patch strictly, checks each patch targets
// an object the kustomization has, and applies $patch: delete.
func resolve(dir string) (*resolved, error) {
	kpath := filepath.Join(dir, "kustomization.yaml")
	k, err := readKustomization(kpath)
	if err != nil {
		return nil, err
	}
	r := &resolved{objects: map[string]object{}, files: []string{kpath}}
	add := func(o object) error {
		if prev, dup := r.objects[o.key()]; dup {
			return fmt.Errorf("%s: %s is also defined in %s", o.file, o.key(), prev.file)
		}
		r.objects[o.key()] = o
		return nil
	}
	for _, res := range k.Resources {
		p := filepath.Join(dir, res)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", kpath, res, err)
		}
		if st.IsDir() {
			sub, err := resolve(p)
			if err != nil {
				return nil, err
			}
			r.files = append(r.files, sub.files...)
			for _, o := range sub.objects {
				if err := add(o); err != nil {
					return nil, err
				}
			}
			continue
		}
		objs, err := decodeFile(p, false)
		if err != nil {
			return nil, err
		}
		r.files = append(r.files, p)
		for _, o := range objs {
			if err := add(o); err != nil {
				return nil, err
			}
		}
	}
	for _, g := range k.ConfigMapGenerator {
		key := "v1/ConfigMap/" + g.Name
		_, exists := r.objects[key]
		switch g.Behavior {
		case "", "create":
			if exists {
				return nil, fmt.Errorf("%s: configMapGenerator %s already exists in a base (use behavior: replace or merge)", kpath, g.Name)
			}
		case "replace", "merge":
			if !exists {
				return nil, fmt.Errorf("%s: configMapGenerator %s has behavior %s but no base generates it", kpath, g.Name, g.Behavior)
			}
		default:
			return nil, fmt.Errorf("%s: configMapGenerator %s: unknown behavior %q", kpath, g.Name, g.Behavior)
		}
		if len(g.Files) == 0 && len(g.Literals) == 0 {
			return nil, fmt.Errorf("%s: configMapGenerator %s is empty", kpath, g.Name)
		}
		for _, f := range g.Files {
			p := filepath.Join(dir, fileOfGeneratorEntry(f))
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("%s: configMapGenerator %s: %w", kpath, g.Name, err)
			}
			r.files = append(r.files, p)
		}
		r.objects[key] = object{file: kpath, kind: "v1/ConfigMap", name: g.Name, typed: &corev1.ConfigMap{}}
	}
	for _, p := range k.Patches {
		if p.Path == "" {
			return nil, fmt.Errorf("%s: only patches from files (path:) are used here", kpath)
		}
		pp := filepath.Join(dir, p.Path)
		objs, err := decodeFile(pp, true)
		if err != nil {
			return nil, err
		}
		r.files = append(r.files, pp)
		for _, o := range objs {
			if _, ok := r.objects[o.key()]; !ok {
				return nil, fmt.Errorf("%s: patches %s, which %s does not have", pp, o.key(), kpath)
			}
			if o.patch == "delete" {
				delete(r.objects, o.key())
			}
		}
	}
	return r, nil
}

func decodeFile(path string, isPatch bool) ([]object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeDocs(path, data, isPatch)
}

func decodeDocs(path string, data []byte, isPatch bool) ([]object, error) {
	var out []object
	for _, doc := range splitDocs(data) {
		o, err := decodeManifest(path, doc, isPatch)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no Kubernetes object", path)
	}
	return out, nil
}

// crossCheck checks references between the objects of one install: ConfigMaps and Secrets that
// pods mount or read, Services that select pods, StatefulSets' governing Services.
func crossCheck(objs map[string]object) []error {
	var errs []error
	has := func(kind, name string) bool { _, ok := objs[kind+"/"+name]; return ok }
	var templates []*corev1.PodTemplateSpec
	for _, o := range objs {
		tmpl, _ := podSpecOf(o)
		if tmpl == nil {
			continue
		}
		templates = append(templates, tmpl)
		for _, v := range tmpl.Spec.Volumes {
			if cm := v.ConfigMap; cm != nil && !has("v1/ConfigMap", cm.Name) && (cm.Optional == nil || !*cm.Optional) {
				errs = append(errs, fmt.Errorf("%s mounts ConfigMap %s, which is not defined", o.key(), cm.Name))
			}
			if s := v.Secret; s != nil && !has("v1/Secret", s.SecretName) && (s.Optional == nil || !*s.Optional) {
				errs = append(errs, fmt.Errorf("%s mounts Secret %s, which is not defined", o.key(), s.SecretName))
			}
		}
		for _, c := range tmpl.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if !has("v1/Secret", ref.Name) && (ref.Optional == nil || !*ref.Optional) {
					errs = append(errs, fmt.Errorf("%s reads Secret %s, which is not defined and not optional", o.key(), ref.Name))
				}
			}
		}
		if ss, ok := o.typed.(*appsv1.StatefulSet); ok && !has("v1/Service", ss.Spec.ServiceName) {
			errs = append(errs, fmt.Errorf("%s: serviceName %s is not a Service here", o.key(), ss.Spec.ServiceName))
		}
	}
	for _, o := range objs {
		svc, ok := o.typed.(*corev1.Service)
		if !ok || len(svc.Spec.Selector) == 0 {
			continue
		}
		matched := false
		for _, t := range templates {
			all := true
			for k, v := range svc.Spec.Selector {
				all = all && t.Labels[k] == v
			}
			matched = matched || all
		}
		if !matched {
			errs = append(errs, fmt.Errorf("%s selects %v, which no pod template has", o.key(), svc.Spec.Selector))
		}
	}
	return errs
}

// containerArgs returns the arguments of the named container of a workload.
func containerArgs(o object, container string) []string {
	tmpl, _ := podSpecOf(o)
	if tmpl == nil {
		return nil
	}
	for _, c := range tmpl.Spec.Containers {
		if c.Name == container {
			return c.Args
		}
	}
	return nil
}

func containerEnv(o object, container, name string) (string, bool) {
	tmpl, _ := podSpecOf(o)
	if tmpl == nil {
		return "", false
	}
	for _, c := range tmpl.Spec.Containers {
		if c.Name != container {
			continue
		}
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value, true
			}
		}
	}
	return "", false
}
