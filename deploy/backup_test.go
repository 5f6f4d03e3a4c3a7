package deploy

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestBackupCronJobReachesTheExporter: in every kustomization, the backup CronJob asks the
// exporter's own pod and port, with the exporter's config (for the archive key that verifies
// the sealed backup) and key Secret, writes to a claim that is defined, never runs two backups
// at once, and prunes what it keeps.
func TestBackupCronJobReachesTheExporter(t *testing.T) {
	for _, root := range kustomizeRoots {
		r, err := resolve(root)
		if err != nil {
			t.Fatalf("%s: %v", root, err)
		}
		cj, ok := r.objects["batch/v1/CronJob/usage-exporter-backup"].typed.(*batchv1.CronJob)
		if !ok {
			t.Fatalf("%s: no CronJob usage-exporter-backup", root)
		}
		ss := r.objects["apps/v1/StatefulSet/usage-exporter"].typed.(*appsv1.StatefulSet)
		svc := r.objects["v1/Service/usage-exporter"].typed.(*corev1.Service)
		for _, err := range checkBackupJob(cj, ss, svc, r.objects) {
			t.Errorf("%s: %v", root, err)
		}
	}
}

func checkBackupJob(cj *batchv1.CronJob, ss *appsv1.StatefulSet, svc *corev1.Service, objs map[string]object) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		fail("concurrencyPolicy is %q: two backups at once would double the load for nothing", cj.Spec.ConcurrencyPolicy)
	}
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		return append(errs, fmt.Errorf("%d containers, want 1", len(pod.Containers)))
	}
	c := pod.Containers[0]
	exporter := ss.Spec.Template.Spec.Containers[0]
	if c.Image != exporter.Image {
		fail("image %s is not the exporter's %s (which ships usagectl)", c.Image, exporter.Image)
	}
	if len(c.Command) == 0 || !strings.HasSuffix(c.Command[0], "/usagectl") || len(c.Args) == 0 || c.Args[0] != "backup" {
		fail("runs %v %v, want usagectl backup", c.Command, c.Args)
	}
	flag := func(args []string, name string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return v
			}
		}
		return ""
	}
	u, err := url.Parse(flag(c.Args, "url"))
	if err != nil || u.Host == "" {
		fail("--url %q: %v", flag(c.Args, "url"), err)
	} else {
		wantHost := ss.Name + "-0." + ss.Spec.ServiceName
		if u.Hostname() != wantHost {
			fail("--url host %s is not the exporter's pod %s", u.Hostname(), wantHost)
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return fmt.Sprint(p.Port) == u.Port() }) {
			fail("--url port %s is not a port of Service %s", u.Port(), svc.Name)
		}
	}
	if keep := flag(c.Args, "keep"); keep == "" || keep == "0" {
		fail("--keep is %q: the backups volume would fill up", keep)
	}
	// The config the exporter reads, from the same ConfigMap: its archive key verifies the
	// backup.
	if flag(c.Args, "config.file") != flag(exporter.Args, "config.file") {
		fail("--config.file %s is not the exporter's %s", flag(c.Args, "config.file"), flag(exporter.Args, "config.file"))
	}
	configMap := func(spec corev1.PodSpec, ctr corev1.Container, path string) string {
		for _, m := range ctr.VolumeMounts {
			if strings.HasPrefix(path, m.MountPath+"/") {
				for _, v := range spec.Volumes {
					if v.Name == m.Name && v.ConfigMap != nil {
						return v.ConfigMap.Name
					}
				}
			}
		}
		return ""
	}
	if got, want := configMap(pod, c, flag(c.Args, "config.file")), configMap(ss.Spec.Template.Spec, exporter, flag(exporter.Args, "config.file")); got == "" || got != want {
		fail("the config file comes from ConfigMap %q, the exporter's from %q", got, want)
	}
	secretOf := func(ctr corev1.Container, env string) string {
		for _, e := range ctr.Env {
			if e.Name == env && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				return e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			}
		}
		return ""
	}
	for _, e := range exporter.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && secretOf(c, e.Name) != secretOf(exporter, e.Name) {
			fail("env %s is %q, the exporter's %q", e.Name, secretOf(c, e.Name), secretOf(exporter, e.Name))
		}
	}
	out := flag(c.Args, "output-dir")
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath != out {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.PersistentVolumeClaim != nil {
				mounted = true
				if _, ok := objs["v1/PersistentVolumeClaim/"+v.PersistentVolumeClaim.ClaimName]; !ok {
					fail("the backups go to claim %s, which is not defined", v.PersistentVolumeClaim.ClaimName)
				}
			}
		}
	}
	if !mounted {
		fail("--output-dir %q is not a mounted PersistentVolumeClaim: the backups would vanish with the pod", out)
	}
	return errs
}
