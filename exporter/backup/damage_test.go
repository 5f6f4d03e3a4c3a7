package backup_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usagemeter/usagemeter/exporter/backup"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// smallBackup is a backup of a store with a few thousand events, with its manifest.
func smallBackup(t *testing.T, key []byte) ([]byte, backup.Manifest) {
	t.Helper()
	s := openStore(t, t.TempDir())
	commitAll(t, s, batches(t, 8, 250, 3))
	data := take(t, s, key)
	m, err := backup.Extract(t.Context(), bytes.NewReader(data), key, "", nil)
	if err != nil {
		t.Fatalf("a whole backup does not check out: %v", err)
	}
	return data, m
}

// TestTruncatedBackupRefused: a backup cut anywhere (an interrupted download, a killed usagectl)
// is refused, never taken for a smaller store.
func TestTruncatedBackupRefused(t *testing.T) {
	for _, key := range [][]byte{nil, bytes.Repeat([]byte{9}, 32)} {
		data, _ := smallBackup(t, key)
		step := max(1, len(data)/97)
		for cut := 0; cut < len(data); cut += step {
			for _, c := range []int{cut, len(data) - 1 - cut/step} { // also the last bytes, one by one
				_, err := backup.Extract(t.Context(), bytes.NewReader(data[:c]), key, "", nil)
				if !errors.Is(err, backup.ErrDamaged) {
					t.Fatalf("encrypted=%v: cut at %d of %d bytes: err = %v, want ErrDamaged", key != nil, c, len(data), err)
				}
			}
		}
	}
}

// TestDamagedBackupRefusedNamingTheFile: one changed byte inside a store file is refused. Plain,
// the message names the file whose checksum does not match; sealed, the chunk holding the byte
// does not authenticate (a chunk may span files: the message says the backup was changed).
func TestDamagedBackupRefusedNamingTheFile(t *testing.T) {
	for _, key := range [][]byte{nil, bytes.Repeat([]byte{9}, 32)} {
		data, m := smallBackup(t, key)
		// The largest file fills most of the stream: flip a byte in its middle.
		var big backup.File
		var before int64
		for _, f := range m.Files {
			if f.Size > big.Size {
				big = f
			}
		}
		for _, f := range m.Files {
			if f.Name < big.Name {
				before += 512 + (f.Size+511)/512*512 // tar header and padded content
			}
		}
		header := bytes.Index(data, []byte("}\n")) + 2 // magic and header line
		off := header + int(before+512+big.Size/2)
		bad := bytes.Clone(data)
		bad[off] ^= 0x40
		_, err := backup.Extract(t.Context(), bytes.NewReader(bad), key, "", nil)
		want := big.Name
		if key != nil {
			want = "does not authenticate"
		}
		if !errors.Is(err, backup.ErrDamaged) || !strings.Contains(err.Error(), want) {
			t.Fatalf("encrypted=%v: a byte changed in %s: err = %v, want ErrDamaged saying %q", key != nil, big.Name, err, want)
		}
	}
}

func TestEncryptedBackupNeedsItsKey(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	data, _ := smallBackup(t, key)
	if _, err := backup.Extract(t.Context(), bytes.NewReader(data), nil, "", nil); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("no key: err = %v", err)
	}
	if _, err := backup.Extract(t.Context(), bytes.NewReader(data), bytes.Repeat([]byte{8}, 32), "", nil); !errors.Is(err, backup.ErrDamaged) {
		t.Fatalf("wrong key: err = %v", err)
	}
}

// TestRestoreRefusesANonEmptyStore: restore never overwrites a store unless told, and with
// --force replaces it only after the backup checked out.
func TestRestoreRefusesANonEmptyStore(t *testing.T) {
	data, m := smallBackup(t, nil)
	dir := t.TempDir()
	file := filepath.Join(dir, "b.umbak")
	os.WriteFile(file, data, 0o600)
	target := filepath.Join(dir, "data")
	os.MkdirAll(target, 0o700)
	os.WriteFile(filepath.Join(target, "precious"), []byte("x"), 0o600)
	if _, err := backup.Restore(t.Context(), file, target, backup.RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err = %v, want a refusal naming the non-empty directory", err)
	}
	// A damaged backup with --force: refused, and what was there is untouched.
	os.WriteFile(file+".cut", data[:len(data)/2], 0o600)
	if _, err := backup.Restore(t.Context(), file+".cut", target, backup.RestoreOptions{Force: true}); !errors.Is(err, backup.ErrDamaged) {
		t.Fatalf("err = %v, want ErrDamaged", err)
	}
	if _, err := os.Stat(filepath.Join(target, "precious")); err != nil {
		t.Fatal("a refused restore touched the store directory")
	}
	// A store that a process has open is never replaced, even with --force.
	open := filepath.Join(dir, "open")
	openStore(t, open)
	if _, err := backup.Restore(t.Context(), file, open, backup.RestoreOptions{Force: true}); err == nil || !strings.Contains(err.Error(), "has the store open") {
		t.Fatalf("restore over an open store: err = %v, want a refusal", err)
	}
	got, err := backup.Restore(t.Context(), file, target, backup.RestoreOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "precious")); err == nil {
		t.Fatal("--force kept the old contents")
	}
	if got.Events != m.Events || got.Events == 0 {
		t.Fatalf("restored %d events, want %d", got.Events, m.Events)
	}
	s := openStore(t, target)
	if got := answers(t, s); !strings.Contains(got, "verify: 0 differences") {
		t.Fatal("the restored store does not verify")
	}
}

// TestInterruptedRestoreIsNotOpened: a store directory holding a restore's staging directory (a
// restore running, or killed) is refused by the ledger rather than opened as an empty store.
func TestInterruptedRestoreIsNotOpened(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ledger.RestoreStagingPrefix+"123"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := ledger.Open(t.Context(), ledger.Options{Path: dir})
	if err == nil || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("err = %v, want a refusal naming the interrupted restore", err)
	}
}
