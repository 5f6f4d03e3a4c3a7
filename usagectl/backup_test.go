package usagectl

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestPruneBackupsKeepsTheNewest: --keep deletes the oldest backups by their time-stamped names
// and the partial files of backups interrupted more than a day ago, nothing else.
func TestPruneBackupsKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	names := []string{
		"usagemeter-20261205T001700Z.umbak", "usagemeter-20261205T061700Z.umbak", "usagemeter-20261205T121700Z.umbak",
		"usagemeter-20261205T181700Z.umbak", "usagemeter-20261206T001700Z.umbak.partial", "usagemeter-20261201T001700Z.umbak.partial", "notes.txt",
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "usagemeter-20261201T001700Z.umbak.partial"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := pruneBackups(dir, 2); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := []string{"notes.txt", "usagemeter-20261205T121700Z.umbak", "usagemeter-20261205T181700Z.umbak", "usagemeter-20261206T001700Z.umbak.partial"}
	if !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
}
