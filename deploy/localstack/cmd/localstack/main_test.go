package main

import (
	"slices"
	"testing"
	"time"
)

// Each start of the stack simulates under a new seed, so a restarted stack (its ledger kept)
// receives new events rather than duplicates; a seed given explicitly is kept.
func TestSimulateArgsSeed(t *testing.T) {
	t1, t2 := time.Unix(1000, 0), time.Unix(2000, 0)
	a, b := simulateArgs("--continuous --rate 50", t1), simulateArgs("--continuous --rate 50", t2)
	if want := []string{"--continuous", "--rate", "50", "--seed", "1000"}; !slices.Equal(a, want) {
		t.Fatalf("got %q, want %q", a, want)
	}
	if slices.Equal(a, b) {
		t.Fatalf("two starts simulate with the same arguments %q", a)
	}
	for _, args := range []string{"--seed 7 --rate 5", "--rate 5 --seed=7"} {
		if got := simulateArgs(args, t1); slices.Contains(got, "1000") || len(got) != len(simulateArgs(args, t2)) {
			t.Errorf("%q: a seed was added: %q", args, got)
		}
	}
}
