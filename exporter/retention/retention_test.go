package retention

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func month(y int, m time.Month) time.Time { return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC) }

// load commits events spread over August to October 2026, each decoded as if received an hour
// after it happened.
func load(t *testing.T, s *ledger.Store) {
	t.Helper()
	start := month(2026, 8)
	for i := range 900 {
		at := start.Add(time.Duration(i) * 2 * time.Hour)
		var body string
		switch i % 3 {
		case 0:
			body = fmt.Sprintf(`{"specversion":"1.0","id":"%d","source":"t","type":"ai.tokens","time":%q,"data":{"tenant":"t%d","user":"u%d","feature":"chat","model":"m","input_tokens":%d,"output_tokens":%d}}`, i, at.Format(time.RFC3339), i%2, i%5, i, i/2)
		case 1:
			body = fmt.Sprintf(`{"specversion":"1.0","id":"%d","source":"t","type":"document.created","time":%q,"data":{"tenant":"t%d","user":"u%d","document_id":"d%d","doc_type":"pdf","bytes":%d}}`, i, at.Format(time.RFC3339), i%2, i%5, i, i*10)
		default:
			body = fmt.Sprintf(`{"specversion":"1.0","id":"%d","source":"t","type":"storage.measured","time":%q,"data":{"tenant":"t%d","storage_class":"hot","bytes":%d}}`, i, at.Format(time.RFC3339), i%2, i*100)
		}
		d := &event.Decoder{Now: func() time.Time { return at.Add(time.Hour) }}
		evs, err := d.Decode("application/json", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
}

func answers(t *testing.T, s *ledger.Store) string {
	t.Helper()
	var out []string
	for _, q := range []ledger.Query{
		{Meter: "ai_tokens", Tenant: "t0", From: month(2026, 8), To: month(2026, 11), GroupBy: []string{"user", "direction"}, Window: ledger.WindowDay},
		{Meter: "documents", Tenant: "t1", From: month(2026, 8), To: month(2026, 11), Window: ledger.WindowMonth},
		{Meter: "storage_bytes", Tenant: "t0", From: month(2026, 8), To: month(2026, 11), Window: ledger.WindowDay},
		{Meter: "active_users", Tenant: "t1", From: month(2026, 8), To: month(2026, 11), Window: ledger.WindowMonth},
	} {
		rows, err := s.Usage(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(rows))
	}
	return strings.Join(out, "\n")
}

func TestArchiveDeleteRestoreGivesIdenticalAnswers(t *testing.T) {
	ctx := context.Background()
	s, err := ledger.Open(ctx, ledger.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	load(t, s)
	before := answers(t, s)
	dir := t.TempDir()
	job := &Job{Store: s, Key: key, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC) },
		Policy: Policy{RawEvents: 40 * 24 * time.Hour, Rollups: 40 * 24 * time.Hour, ArchiveDir: dir}}
	n, err := job.RunOnce(ctx)
	if err != nil || n != 4 {
		t.Fatalf("archived %d months (%v), want August and September of both classes", n, err)
	}
	for _, f := range []string{"raw_events-2026-08.umarc", "raw_events-2026-09.umarc", "rollups-2026-08.umarc", "rollups-2026-09.umarc"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing archive: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rollups-2026-10.umarc")); err == nil {
		t.Error("October is not past its retention but was archived")
	}
	if after := answers(t, s); after == before {
		t.Fatal("archiving deleted nothing")
	}
	if _, err := s.Verify(ctx); err == nil {
		t.Error("verify ran over archived raw events")
	}
	// A second run archives nothing more.
	if n, err := job.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second run archived %d (%v)", n, err)
	}

	for _, m := range []time.Time{month(2026, 8), month(2026, 9)} {
		for _, class := range []string{ledger.ClassRawEvents, ledger.ClassRollups} {
			if _, err := RestoreMonth(ctx, s, class, m, dir, key); err != nil {
				t.Fatalf("restore %s %s: %v", class, m.Format("2006-01"), err)
			}
		}
	}
	if after := answers(t, s); after != before {
		t.Fatalf("answers differ after restore:\nbefore %s\nafter  %s", before, after)
	}
	if diffs, err := s.Verify(ctx); err != nil || len(diffs) > 0 {
		t.Fatalf("verify after restore: %v %v", err, diffs)
	}
	if months, _ := s.ArchivedMonths(ctx, ledger.ClassRawEvents); len(months) != 0 {
		t.Errorf("still marked archived: %v", months)
	}
}

func TestArchiveRefusesTamperingAndWrongKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.umarc")
	w, err := Create(path, key, "rollups", month(2026, 9), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Enough incompressible data for several chunks.
	for i := range 40000 {
		v := make([]byte, 64)
		rand.Read(v)
		w.Add([]byte(fmt.Sprintf("r/key-%08d", i)), v)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	readAll := func(p string, k []byte) (int, error) {
		r, err := Open(p, k)
		if err != nil {
			return 0, err
		}
		defer r.Close()
		n := 0
		return n, checkAll(r, &n)
	}
	if n, err := readAll(path, key); err != nil || n != 40000 {
		t.Fatalf("read back %d records: %v", n, err)
	}
	if _, err := readAll(path, []byte("another key, also 32 bytes long!")); err == nil {
		t.Error("opened with the wrong key")
	}
	data, _ := os.ReadFile(path)
	for name, bad := range map[string][]byte{
		"flipped byte": func() []byte { b := append([]byte(nil), data...); b[len(b)/2] ^= 1; return b }(),
		"truncated":    data[:len(data)*2/3],
		"last chunk dropped": func() []byte {
			// Cut at a chunk boundary: the remaining chunks authenticate, but none is the last.
			hdrEnd := strings.Index(string(data[len(magic):]), "\n") + len(magic) + 1
			off := hdrEnd
			var cuts []int
			for off < len(data) {
				n := int(data[off])<<24 | int(data[off+1])<<16 | int(data[off+2])<<8 | int(data[off+3])
				off += 4 + n
				cuts = append(cuts, off)
			}
			if len(cuts) < 3 {
				t.Fatalf("only %d chunks", len(cuts))
			}
			return data[:cuts[len(cuts)-2]]
		}(),
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, bad, 0o600)
		if n, err := readAll(p, key); err == nil {
			t.Errorf("%s: read %d records without an error", name, n)
		}
	}
}

func TestParseConfig(t *testing.T) {
	parse := func(s string) (Policy, error) {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
			t.Fatal(err)
		}
		return ParseConfig(doc.Content[0].Content[1])
	}
	p, err := parse("retention:\n  raw_events: 400d\n  rollups: 2y\n  key_env: K\n  archive_dir: /a\n")
	if err != nil || p.RawEvents != 400*24*time.Hour || p.ArchiveDir != "/a" || p.KeyEnv != "K" {
		t.Fatalf("%+v %v", p, err)
	}
	for _, bad := range []string{
		"retention:\n  raw_events: 10d\n  key_env: K\n",                   // inside the late window
		"retention:\n  raw_events: 400d\n",                                // no key
		"retention:\n  raw_events: 400d\n  rollups: 100d\n  key_env: K\n", // rollups shorter than raw
		"retention:\n  invoices: 100d\n  key_env: K\n",
		"retention:\n  audit: 7d\n  key_env: K\n",
		"retention:\n  raw_events: soon\n  key_env: K\n",
	} {
		if _, err := parse(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	k, err := LoadKey("", "")
	if err == nil || k != nil {
		t.Error("no key source accepted")
	}
	f := filepath.Join(t.TempDir(), "k")
	os.WriteFile(f, []byte(hex.EncodeToString(key)+"\n"), 0o600)
	if k, err := LoadKey(f, ""); err != nil || !reflect.DeepEqual(k, key) {
		t.Errorf("hex key file: %v", err)
	}
}

func TestAuditTrailRetention(t *testing.T) {
	ctx := context.Background()
	s, err := ledger.Open(ctx, ledger.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	auditKey := []byte("the audit chain's own hmac key")
	log, err := audit.Open(s.DB(), audit.Options{Key: auditKey, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for i := range 90 { // August to October
		e := audit.Entry{Subject: "alice", Kind: "token", Action: "usage.read", Tenant: "acme", Allow: true, Status: 200,
			Time: month(2026, 8).Add(time.Duration(i) * 24 * time.Hour)}
		if _, err := log.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	job := &Job{Store: s, Key: key, AuditKey: auditKey, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return month(2026, 11).AddDate(0, 0, 25) },
		Policy: Policy{Audit: 40 * 24 * time.Hour, ArchiveDir: dir}}
	if n, err := job.RunOnce(ctx); err != nil || n != 2 {
		t.Fatalf("archived %d months (%v), want August and September", n, err)
	}
	if res, err := log.Verify(ctx); err != nil || res.Entries != 90 {
		t.Fatalf("verify with two months archived: %+v %v", res, err)
	}
	if kept, _ := log.List(ctx, 0, 1000); len(kept) != 90-31-30 {
		t.Fatalf("%d entries kept, want October's 29", len(kept))
	}
	if _, err := RestoreAuditMonth(ctx, s, month(2026, 8), dir, key, auditKey); err == nil {
		t.Fatal("restoring August before September was accepted")
	}
	for _, m := range []time.Time{month(2026, 9), month(2026, 8)} {
		if _, err := RestoreAuditMonth(ctx, s, m, dir, key, auditKey); err != nil {
			t.Fatal(err)
		}
	}
	if all, _ := log.List(ctx, 0, 1000); len(all) != 90 {
		t.Fatalf("%d entries after restoring, want 90", len(all))
	}
	if _, err := log.Verify(ctx); err != nil {
		t.Fatalf("verify after restoring: %v", err)
	}
	if months, _ := s.ArchivedMonths(ctx, ClassAudit); len(months) != 0 {
		t.Errorf("still marked archived: %v", months)
	}
}

func TestInvoiceRetention(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Parse([]byte("plans:\n  - {name: pro}\ndefault_plan: pro\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ledger.Open(ctx, ledger.Options{Path: t.TempDir(), Meters: cfg.Meters})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Usage in June and July 2025, more than 400 days before the job's clock.
	for i, m := range []time.Month{time.June, time.July} {
		at := time.Date(2025, m, 10, 12, 0, 0, 0, time.UTC)
		body := fmt.Sprintf(`{"specversion":"1.0","id":"%d","source":"t","type":"ai.tokens","time":%q,"data":{"tenant":"acme","user":"u","feature":"chat","model":"m","input_tokens":1000000,"output_tokens":500000}}`, i, at.Format(time.RFC3339))
		evs, err := (&event.Decoder{Now: func() time.Time { return at }}).Decode("application/json", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	bill, err := billing.New(billingOptions(t, cfg, s))
	if err != nil {
		t.Fatal(err)
	}
	var numbers []string
	for _, m := range []time.Month{time.June, time.July} {
		res, err := bill.Run(ctx, rating.Period{Year: 2025, Month: m})
		if err != nil || res.Finalized != 1 {
			t.Fatalf("run %s: %+v %v", m, res, err)
		}
		numbers = append(numbers, res.Invoices[0])
	}
	// June is paid; July still owes money.
	june, _ := bill.Get(ctx, numbers[0])
	if _, err := bill.RecordPayment(ctx, invoice.PaymentInput{Invoice: june.Number, Amount: june.AmountRemaining, Method: "bank_transfer"}); err != nil {
		t.Fatal(err)
	}
	before, _ := bill.Balance(ctx, "acme")
	dir := t.TempDir()
	job := &Job{Store: s, Key: key, Invoices: bill, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return month(2026, 11).AddDate(0, 0, 25) },
		Policy: Policy{Invoices: 400 * 24 * time.Hour, ArchiveDir: dir}}
	// June (paid), and August and September (no invoices) are past retention; July owes money.
	if n, err := job.RunOnce(ctx); err != nil || n != 3 {
		t.Fatalf("archived %d months (%v), want June, August and September", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "invoices-2025-07.umarc")); err == nil {
		t.Error("July, unpaid, was archived")
	}
	if _, err := bill.Get(ctx, june.Number); err == nil {
		t.Error("June's invoice is still in the store")
	}
	if _, err := bill.Get(ctx, numbers[1]); err != nil {
		t.Errorf("July's unpaid invoice was archived: %v", err)
	}
	if after, _ := bill.Balance(ctx, "acme"); after != before {
		t.Errorf("balance changed by archiving: %+v → %+v", before, after)
	}
	if _, err := RestoreInvoiceMonth(ctx, s, bill, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), dir, key); err != nil {
		t.Fatal(err)
	}
	if got, err := bill.Get(ctx, june.Number); err != nil || got.Status != invoice.Paid {
		t.Fatalf("restored June: %+v %v", got, err)
	}
}

func billingOptions(t *testing.T, cfg *config.Config, s *ledger.Store) billing.Options {
	t.Helper()
	cat, err := billing.Catalogue(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return billing.Options{DB: s.DB(), Catalogue: cat, Usage: s, Stock: billing.StockFunc(cfg.Meters),
		DefaultPlan: func(string) string { return "pro" },
		Now:         func() time.Time { return time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC) }}
}
