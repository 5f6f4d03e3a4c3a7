// Package enginecmp measures the ledger's storage engine choice: the same batches of the
// simulator's event mix, committed durably with dedupe, raw events and hourly rollups, once
// through the real Pebble ledger and once through the same write path on SQLite (pure Go,
// modernc.org/sqlite, WAL, synchronous=FULL, one transaction per batch). Run by `make bench`.
package enginecmp

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
	"github.com/usagemeter/usagemeter/simulate"
)

const batch = 1000

func batches(b *testing.B, n int) [][]event.Event {
	g := simulate.NewGenerator(200, 3)
	dec := &event.Decoder{}
	now := time.Now()
	out := make([][]event.Event, n)
	for i := range out {
		evs, err := dec.Decode("application/x-ndjson", g.Batch(batch, now))
		if err != nil {
			b.Fatal(err)
		}
		out[i] = evs
	}
	return out
}

func BenchmarkPebbleLedger(b *testing.B) {
	bs := batches(b, b.N)
	s, err := ledger.Open(context.Background(), ledger.Options{Path: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for _, evs := range bs {
		if _, err := s.Commit(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil { // includes the final flush of derived usage
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSQLite is the same write path on SQLite: a dedupe primary key, the raw event, and
// an upsert per rollup cell (meter, tenant, hour, dimensions), as the ledger derives them.
func BenchmarkSQLite(b *testing.B) {
	bs := batches(b, b.N)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "ledger.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE events (hash BLOB PRIMARY KEY, time INTEGER, raw BLOB) WITHOUT ROWID`,
		`CREATE TABLE rollups (meter TEXT, tenant TEXT, hour INTEGER, dims TEXT, value INTEGER, PRIMARY KEY (meter, tenant, hour, dims)) WITHOUT ROWID`,
	} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
	defs := meter.Defaults()
	b.ResetTimer()
	for _, evs := range bs {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		ins, _ := tx.Prepare(`INSERT INTO events (hash, time, raw) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`)
		up, _ := tx.Prepare(`INSERT INTO rollups (meter, tenant, hour, dims, value) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = value + excluded.value`)
		for i := range evs {
			e := &evs[i]
			h := sha256.Sum256([]byte(e.Source + "\x00" + e.ID))
			res, err := ins.Exec(h[:16], e.Time.UnixNano(), e.Raw)
			if err != nil {
				b.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue // duplicate
			}
			hour := e.Time.Unix() / 3600
			for _, d := range defs {
				for _, bind := range d.Events {
					if bind.Type != e.Type || d.Aggregation == meter.Latest || d.Aggregation == meter.UniqueCount {
						continue
					}
					v := int64(1)
					if bind.Value != "" {
						q, ok := e.Quantity(bind.Value)
						if !ok {
							continue
						}
						v = q
					}
					if bind.Sign == -1 {
						v = -v
					}
					var dims []string
					for _, dim := range d.Dimensions {
						val, ok := bind.Set[dim]
						if !ok {
							val, _ = e.Field(dim)
						}
						dims = append(dims, val)
					}
					if _, err := up.Exec(d.Name, e.Tenant, hour, strings.Join(dims, "\x00"), v); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}
