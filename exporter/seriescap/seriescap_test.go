package seriescap

import (
	"fmt"
	"testing"
)

func TestAdmission(t *testing.T) {
	a := New(5)
	a.Declare("declared")
	// Width 2 each: two keys fit (4 series), the third would make 6.
	for i, want := range []bool{true, true, false} {
		if got := a.Admit("m", fmt.Sprint("t", i), 2); got != want {
			t.Errorf("key %d: admitted %v, want %v", i, got, want)
		}
	}
	// Sticky both ways: the admitted stay admitted, the folded stay folded, even though a
	// width-1 key would still fit.
	if !a.Admit("m", "t0", 2) || a.Admit("m", "t2", 1) {
		t.Error("admission changed between scrapes")
	}
	if !a.Admit("m", "t9", 1) {
		t.Error("a new narrow key does not take the last free series")
	}
	// Growing past the cap folds the key.
	if a.Admit("m", "t0", 3) {
		t.Error("a key grown past the cap is still admitted")
	}
	got := a.Folded()
	// t2 folded at width 2, t0 at width 3.
	if got["m"] != 5 || got["declared"] != 0 || len(got) != 2 {
		t.Errorf("Folded = %v", got)
	}
	// Families are capped independently.
	if !a.Admit("other", "t2", 5) || a.Admit("other", "t3", 1) {
		t.Error("families share a cap")
	}
}
