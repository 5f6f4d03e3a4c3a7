package policies

import "testing"

func TestModulesExcludeTests(t *testing.T) {
	mods, err := Modules()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"authz.rego", "quota.rego"} {
		if mods[want] == "" {
			t.Errorf("module %s missing from the runtime set", want)
		}
	}
	for name := range mods {
		if !IsRuntimeModule(name) {
			t.Errorf("%s is in the runtime set", name)
		}
	}
	if len(mods) != 2 {
		t.Errorf("runtime set has %d modules, want 2: %v", len(mods), mods)
	}
}
