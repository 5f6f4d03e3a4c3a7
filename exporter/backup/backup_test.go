package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/backup"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/simulate"
)

func openStore(t *testing.T, dir string) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(t.Context(), ledger.Options{Path: dir, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// batches are requests of simulated events (all tenants, all event types), times spread over
// the last two days.
func batches(t *testing.T, n, size int, seed uint64) [][]event.Event {
	t.Helper()
	g := simulate.NewGenerator(20, seed)
	now := time.Now()
	d := &event.Decoder{}
	out := make([][]event.Event, n)
	for i := range out {
		var body []byte
		for j := range size {
			body = g.Next(body, now.Add(-time.Duration(i*size+j)*7*time.Second))
			body = append(body, '\n')
		}
		evs, err := d.Decode("application/x-ndjson", body)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = evs
	}
	return out
}

func commitAll(t *testing.T, s *ledger.Store, reqs [][]event.Event) {
	t.Helper()
	for _, r := range reqs {
		if _, err := s.Commit(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// answers is everything the store answers about usage: every meter's usage per tenant, grouped
// by every dimension, by hour, and its totals, plus the ledger's own verification.
func answers(t *testing.T, s *ledger.Store) string {
	t.Helper()
	ctx := t.Context()
	to := time.Now().Add(2 * time.Hour).Truncate(time.Hour)
	from := to.Add(-72 * time.Hour)
	tenants, err := s.Tenants(ctx, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(tenants) == 0 {
		t.Fatal("no tenants: the store is empty")
	}
	var b strings.Builder
	for _, m := range s.Meters() {
		for _, tenant := range tenants {
			rows, err := s.Usage(ctx, ledger.Query{Meter: m.Name, Tenant: tenant, From: from, To: to, GroupBy: m.Dimensions, Window: ledger.WindowHour})
			if err != nil {
				t.Fatal(err)
			}
			total, err := s.Total(ctx, tenant, m.Name, from, to)
			if err != nil {
				t.Fatal(err)
			}
			j, _ := json.Marshal(rows)
			fmt.Fprintf(&b, "%s %s total=%d %s\n", m.Name, tenant, total, j)
		}
	}
	diffs, err := s.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "verify: %d differences %v\n", len(diffs), diffs)
	return b.String()
}

func take(t *testing.T, s *ledger.Store, key []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := backup.Take(t.Context(), s, &buf, key, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func restore(t *testing.T, data []byte, key []byte) (string, backup.Manifest) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "b"+backup.Extension)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "restored")
	m, err := backup.Restore(t.Context(), file, target, backup.RestoreOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return target, m
}

// TestRestoredAnswersAsAtTheSnapshot: a store restored from a backup answers every usage query,
// total and verification exactly as the original did when the backup was taken, though the
// original took more events since.
func TestRestoredAnswersAsAtTheSnapshot(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", encrypted), func(t *testing.T) {
			var key []byte
			if encrypted {
				key = bytes.Repeat([]byte{7}, 32)
			}
			s := openStore(t, t.TempDir())
			reqs := batches(t, 40, 250, 1)
			commitAll(t, s, reqs[:30])
			// The derived changes of the last groups are still pending in memory (the flush
			// interval is an hour): the backup must hold them.
			atSnapshot := answers(t, s)
			if !strings.Contains(atSnapshot, "verify: 0 differences") {
				t.Fatalf("the original does not verify:\n%s", atSnapshot)
			}
			data := take(t, s, key)
			commitAll(t, s, reqs[30:])
			if answers(t, s) == atSnapshot {
				t.Fatal("the original did not change after the snapshot: the comparison proves nothing")
			}

			dir, m := restore(t, data, key)
			if m.Events != 30*250 || m.SchemaVersion == 0 || m.LastGroup == 0 || m.Checkpoint != m.LastGroup {
				t.Fatalf("manifest = %+v, want 7500 events, a schema version, and every group flushed", m.SnapshotInfo)
			}
			if encrypted == bytes.Contains(data, []byte("MANIFEST.json")) {
				t.Fatalf("encrypted=%v but the manifest's name is readable=%v", encrypted, !encrypted)
			}
			r := openStore(t, dir)
			if got := answers(t, r); got != atSnapshot {
				t.Fatalf("the restored store answers differently from the original at the snapshot:\n got %.2000s\nwant %.2000s", got, atSnapshot)
			}
			// Every event of the snapshot is there once: sent again, each is a duplicate.
			for _, req := range reqs[:30] {
				res, err := r.Commit(t.Context(), req)
				if err != nil || res.Accepted != 0 {
					t.Fatalf("an event of the snapshot was accepted again: %+v, %v", res, err)
				}
			}
		})
	}
}

// TestBackupDuringIngestCountsAckedEventsOnce: requests acknowledged before the backup starts
// are all in it, those sent after it returned are not, those in flight are in it whole or not
// at all, and the restored ledger's rollups and totals match its raw events (each counted once).
func TestBackupDuringIngestCountsAckedEventsOnce(t *testing.T) {
	s := openStore(t, t.TempDir())
	reqs := batches(t, 240, 50, 2)
	var acked [240]atomic.Int64 // 0 not yet, else the nanosecond the ack came
	var started [240]atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(reqs)) {
					return
				}
				started[i].Store(time.Now().UnixNano())
				if _, err := s.Commit(context.Background(), reqs[i]); err != nil {
					t.Error(err)
					return
				}
				acked[i].Store(time.Now().UnixNano())
			}
		}()
	}
	for next.Load() < 80 {
		time.Sleep(time.Millisecond)
	}
	before := time.Now().UnixNano()
	data := take(t, s, nil)
	after := time.Now().UnixNano()
	wg.Wait()
	if t.Failed() {
		return
	}
	dir, m := restore(t, data, nil)
	r := openStore(t, dir)
	var in, inFlight int
	for i, req := range reqs {
		res, err := r.Commit(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		// Sending a request again to the restored store tells whether its events were there:
		// all duplicates, or all new.
		present := res.Accepted == 0
		switch {
		case res.Accepted != 0 && res.Duplicates != 0:
			t.Fatalf("request %d is half in the backup: %+v", i, res)
		case acked[i].Load() < before && !present:
			t.Fatalf("request %d was acknowledged before the backup started but is not in it", i)
		case started[i].Load() > after && present:
			t.Fatalf("request %d was sent after the backup returned but is in it", i)
		case present:
			in++
		}
		if acked[i].Load() >= before && started[i].Load() <= after {
			inFlight++
		}
	}
	if int64(in*50) != m.Events {
		t.Fatalf("the manifest counts %d events, the restored store holds %d", m.Events, in*50)
	}
	t.Logf("%d of %d requests in the backup, %d in flight during it", in, len(reqs), inFlight)
	// Restored, then given every request again: the ledger's derived state matches its raw
	// events, and those are all 12000 once.
	if got := answers(t, r); !strings.Contains(got, "verify: 0 differences") {
		t.Fatalf("the restored ledger does not verify:\n%s", got[len(got)-500:])
	}
	cdir, info, err := r.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ledger.RemoveCheckpoint(cdir)
	if info.Events != 240*50 {
		t.Fatalf("%d events after sending everything again, want %d", info.Events, 240*50)
	}
}
