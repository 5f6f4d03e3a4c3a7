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
	// The admitted stay admitted; a key that does not fit stays folded.
	if !a.Admit("m", "t0", 2) || a.Admit("m", "t2", 2) {
		t.Error("admission changed between scrapes")
	}
	if !a.Admit("m", "t9", 1) {
		t.Error("a new narrow key does not take the last free series")
	}
	// Full: every new key is folded, without the folded ones being remembered.
	if a.Admit("m", "t2", 1) || a.Admit("m", "t10", 1) {
		t.Error("a key was admitted past the cap")
	}
	if n := len(a.families["m"].admitted); n != 3 {
		t.Errorf("%d keys kept in memory, want the 3 admitted", n)
	}
	// Growing past the cap folds the key and frees what it held.
	if a.Admit("m", "t0", 3) || a.families["m"].series != 3 {
		t.Errorf("a key grown past the cap: series %d, want 3 (t1 and t9)", a.families["m"].series)
	}
	// The overflow count is the most a scrape folded: it never decreases.
	a.ObserveFolded("m", 4)
	a.ObserveFolded("m", 2)
	got := a.Folded()
	if got["m"] != 4 || got["declared"] != 0 || len(got) != 2 {
		t.Errorf("Folded = %v", got)
	}
	// Families are capped independently.
	if !a.Admit("other", "t2", 5) || a.Admit("other", "t3", 1) {
		t.Error("families share a cap")
	}
}
