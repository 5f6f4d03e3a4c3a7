package insights

import (
	"context"
	"errors"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

var at = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func d(m time.Month, day, hour int) time.Time {
	return time.Date(2026, m, day, hour, 0, 0, 0, time.UTC)
}

type E = ledgertest.Event

var ev = ledgertest.E

func doc(typ string, t time.Time, tenant, user, id, hash string, bytes int) E {
	kv := []any{"tenant", tenant, "user", user, "document_id", id, "doc_type", "pdf", "bytes", bytes}
	if hash != "" {
		kv = append(kv, "content_hash", hash)
	}
	return ev(typ, t, kv...)
}

func ai(t time.Time, tenant, user, feature, model string, in, out int) E {
	return ev("ai.tokens", t, "tenant", tenant, "user", user, "feature", feature, "model", model, "input_tokens", in, "output_tokens", out)
}

func ingest(t time.Time, tenant, source, hash string, bytes, records int) E {
	kv := []any{"tenant", tenant, "source", source, "bytes", bytes, "records", records}
	if hash != "" {
		kv = append(kv, "content_hash", hash)
	}
	return ev("ingest.completed", t, kv...)
}

// fixtureEvents are the events of fixture().
func fixtureEvents() []E {
	return []E{
		doc("document.created", d(8, 12, 10), "acme", "dave", "d6", "", 300),
		doc("document.created", d(10, 11, 10), "acme", "bob", "d2", "H1", 1000),
		doc("document.created", d(11, 1, 10), "acme", "alice", "d1", "H1", 1000),
		doc("document.created", d(11, 2, 10), "acme", "alice", "d3", "H1", 1000),
		doc("document.created", d(11, 10, 10), "acme", "carol", "d4", "H2", 500),
		doc("document.created", d(11, 10, 11), "acme", "carol", "d5", "H2", 500),
		doc("document.deleted", d(11, 11, 10), "acme", "carol", "d5", "H2", 500),
		ev("storage.measured", d(10, 25, 0), "tenant", "acme", "storage_class", "standard", "bytes", 10000),
		ai(d(10, 15, 9), "acme", "alice", "chat", "gpt-small", 100000, 50000),
		ai(d(11, 10, 9), "acme", "alice", "chat", "gpt-large", 100000, 20000),
		ai(d(11, 10, 9), "acme", "alice", "chat", "gpt-small", 10000, 2000),
		ai(d(11, 10, 9), "acme", "alice", "search", "embed-v2", 5000, 0),
		ai(d(11, 10, 9), "beta", "zed", "chat", "claude-mid", 800000, 200000),
		ingest(d(10, 10, 1), "acme", "s3", "HX", 100, 10),
		ingest(d(11, 12, 1), "acme", "s3", "HX", 100, 10),
		ingest(d(11, 13, 1), "acme", "s3", "HX", 100, 10),
		ingest(d(11, 14, 1), "acme", "s3", "HX", 100, 10),
		ingest(d(11, 15, 1), "acme", "s3", "HY", 50, 5),
		ingest(d(11, 16, 1), "acme", "s3", "", 70, 7),
	}
}

// fixture loads two tenants whose every insight is known exactly (see each test).
func fixture(t *testing.T) *ledger.Store {
	st := ledgertest.Open(t)
	ledgertest.Load(t, st, fixtureEvents()...)
	return st
}

// catalogue prices storage and ingest at one minor unit per byte, on a big and a small plan.
func catalogue(t *testing.T) *pricing.Catalogue {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(`
currency: USD
plans:
  - name: big
    base_fee: "100.00"
    charges:
      - {meter: storage_bytes, model: per_unit, unit_price: "0.01"}
      - {meter: ingest_bytes, model: per_unit, unit_price: "0.01"}
  - name: small
    base_fee: "10.00"
    charges:
      - {meter: storage_bytes, model: per_unit, unit_price: "0.01"}
      - {meter: ingest_bytes, model: per_unit, unit_price: "0.01"}
`), &n); err != nil {
		t.Fatal(err)
	}
	c, err := pricing.ParseConfig(&n)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func pricedEngine(t *testing.T, st *ledger.Store) *Engine {
	cat := catalogue(t)
	return &Engine{Store: st, Pricing: Pricing{
		Catalogue: func() pricing.Catalogue { return *cat },
		Stock:     billing.StockFunc(meter.Defaults()),
		PlanAt:    func(context.Context, string, time.Time) (string, error) { return "big", nil },
	}}
}

func find(t *testing.T, ins []Insight, tenant, kind string) Insight {
	t.Helper()
	for _, in := range ins {
		if in.Tenant == tenant && in.Kind == kind {
			return in
		}
	}
	t.Fatalf("no %s insight for %s in %d insights", kind, tenant, len(ins))
	return Insight{}
}

func num(in Insight, name string) int64 {
	for _, e := range in.Evidence {
		for _, n := range e.Numbers {
			if n.Name == name {
				return n.Value
			}
		}
	}
	return -1
}

func amount(s Saving) int64 {
	if s.Amount == nil {
		return -1
	}
	return *s.Amount
}

func TestDetectExact(t *testing.T) {
	st := fixture(t)
	e := pricedEngine(t, st)
	ins, err := e.Detect(context.Background(), []string{"acme", "beta"}, at)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		tenant, kind, subject string
		units, amount         int64
		numbers               map[string]int64
	}
	wants := []want{
		// Both tenants pay 100.00 base on "big", "small" 10.00: 9000 cents. acme also pays its October
		// storage level (10000 bytes) and ingest (the 100-byte job of October 10) at a cent a byte.
		{"acme", KindPlanRightSizing, "plan", 0, 9000, map[string]int64{"current_cost": 10000 + 10000 + 100, "suggested_cost": 1000 + 10000 + 100}},
		{"beta", KindPlanRightSizing, "plan", 0, 9000, map[string]int64{"current_cost": 10000, "suggested_cost": 1000}},
		// 120,000 chat tokens on gpt-large (1000/M) could go to gpt-small (50/M): 114 cents.
		{"acme", KindCheaperModel, "chat/gpt-large", 120000, 114, map[string]int64{"tokens_gpt-large": 120000, "tokens_gpt-small": 12000}},
		// beta's claude-mid (300/M) chat: gpt-small serves chat for acme: 1,000,000 × 250/M.
		{"beta", KindCheaperModel, "chat/claude-mid", 1000000, 250, map[string]int64{"tokens_gpt-small": 0}},
		// d1, d2, d3 share H1: two redundant copies of 1000 bytes; storage 10000 → 8000.
		{"acme", KindDuplicateDocuments, "documents", 2000, 2000, map[string]int64{"live_documents": 5, "live_document_bytes": 3800, "duplicate_groups": 1, "redundant_copies": 2}},
		// storage 10000, live documents 3800.
		{"acme", KindUnbackedStorage, "unbacked", 6200, 6200, map[string]int64{"storage_bytes": 10000, "document_bytes": 3800}},
		// dave, last seen 2026-08-12, owns d6 (300 bytes); idle means 90 days.
		{"acme", KindIdleData, "idle", 300, 300, map[string]int64{"idle_owners": 1, "idle_documents": 1}},
		// bob (2026-10-11) and dave are inactive for 30 days; 4 users known.
		{"acme", KindInactiveSeats, "seats", 2, -1, map[string]int64{"known_users": 4, "inactive_users": 2}},
		// HX sent 3 times in the lookback (the October job is older): 200 bytes, 20 records again.
		{"acme", KindDuplicateIngest, "s3", 200, 200, map[string]int64{"jobs_with_hash": 4, "distinct_hashes": 2, "repeated_jobs": 2, "wasted_records": 20, "ingest_bytes": 420}},
	}
	if len(ins) != len(wants) {
		for _, in := range ins {
			t.Logf("%s %s %s %+v", in.Tenant, in.Kind, in.Subject, in.Saving)
		}
		t.Fatalf("%d insights, want %d", len(ins), len(wants))
	}
	for _, w := range wants {
		in := find(t, ins, w.tenant, w.kind)
		if in.Subject != w.subject || in.Saving.Units != w.units || amount(in.Saving) != w.amount {
			t.Errorf("%s %s: subject %q units %d amount %d; want %q %d %d (%s)", w.tenant, w.kind, in.Subject, in.Saving.Units, amount(in.Saving), w.subject, w.units, w.amount, in.Saving.Pricing)
		}
		for k, v := range w.numbers {
			if got := num(in, k); got != v {
				t.Errorf("%s %s: evidence %s = %d, want %d", w.tenant, w.kind, k, got, v)
			}
		}
		if in.ID != ID(w.kind, w.tenant, w.subject) || len(in.Evidence) == 0 || in.Evidence[0].Query == "" {
			t.Errorf("%s %s: id %q or evidence missing", w.tenant, w.kind, in.ID)
		}
	}
	// Largest money saving first; the seat insight (unpriced) last.
	if amount(ins[0].Saving) != 9000 || ins[len(ins)-1].Kind != KindInactiveSeats {
		t.Errorf("order: first %s %d, last %s", ins[0].Kind, amount(ins[0].Saving), ins[len(ins)-1].Kind)
	}
}

func TestUnitsOnlyWithoutBilling(t *testing.T) {
	st := fixture(t)
	cfg, err := config.Parse([]byte(`
default_plan: big
plans:
  - {name: big, enforcement: soft, warning_ratio: 0.8, limits: {ai_tokens: 1000000, storage_bytes: 100000}}
  - {name: small, enforcement: soft, warning_ratio: 0.8, limits: {ai_tokens: 200000, storage_bytes: 20000}}
  - {name: tiny, enforcement: soft, warning_ratio: 0.8, limits: {ai_tokens: 1000, storage_bytes: 1000}}
tenants:
  - {id: acme, plan: big}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Store: st, Config: func() *config.Config { return cfg }}
	ins, err := e.Detect(context.Background(), []string{"acme"}, at)
	if err != nil {
		t.Fatal(err)
	}
	p := find(t, ins, "acme", KindPlanRightSizing)
	// October: 150,000 tokens (fits small's 200,000, not tiny's 1,000); storage 10,000 at the end.
	if p.Title != "Plan big fits within the smaller plan small" || num(p, "used_ai_tokens") != 150000 || num(p, "used_storage_bytes") != 10000 || p.Saving.Amount != nil {
		t.Errorf("plan insight: %q used %d/%d amount %v", p.Title, num(p, "used_ai_tokens"), num(p, "used_storage_bytes"), p.Saving.Amount)
	}
	for _, in := range ins {
		if in.Kind != KindCheaperModel && in.Saving.Amount != nil {
			t.Errorf("%s priced without a catalogue: %d", in.Kind, *in.Saving.Amount)
		}
	}
	if dd := find(t, ins, "acme", KindDuplicateDocuments); dd.Saving.Units != 2000 || dd.Saving.Pricing != "units only: the billing catalogue is not wired" {
		t.Errorf("duplicates without billing: %+v", dd.Saving)
	}
}

func TestApplyAndTrack(t *testing.T) {
	st := fixture(t)
	e := pricedEngine(t, st)
	ctx := context.Background()
	dupID := ID(KindDuplicateDocuments, "acme", "documents")
	if _, err := e.Apply(ctx, "acme", "0000000000000000", at, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("applying an unknown id: %v", err)
	}
	a, err := e.Apply(ctx, "acme", dupID, at, "dedupe job scheduled")
	if err != nil {
		t.Fatal(err)
	}
	if a.Insight.Saving.Units != 2000 || a.Note != "dedupe job scheduled" {
		t.Fatalf("baseline %+v", a)
	}
	if _, err := e.Apply(ctx, "acme", ID(KindCheaperModel, "acme", "chat/gpt-large"), at, ""); err != nil {
		t.Fatal(err)
	}
	track := func(when time.Time) map[string]Tracking {
		trs, err := e.Track(ctx, "acme", when)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]Tracking{}
		for _, tr := range trs {
			out[tr.Insight.Kind] = tr
		}
		if len(out) != 2 {
			t.Fatalf("%d tracked, want 2", len(out))
		}
		return out
	}
	tr := track(at)
	if tr[KindDuplicateDocuments].Status != "pending" || tr[KindDuplicateDocuments].RealizedUnits != 0 {
		t.Fatalf("before anything changed: %+v", tr[KindDuplicateDocuments])
	}
	// One copy deleted: 1000 of 2000 bytes realized (2000 cents promised, 1000 realized).
	ledgertest.Load(t, st, doc("document.deleted", d(11, 21, 0), "acme", "alice", "d3", "H1", 1000))
	tr = track(d(11, 22, 0))
	dd := tr[KindDuplicateDocuments]
	if dd.Status != "partial" || dd.RealizedUnits != 1000 || dd.Current == nil || dd.Current.Units != 1000 || dd.RealizedAmount == nil || *dd.RealizedAmount != 1000 {
		t.Fatalf("after one deletion: %+v", dd)
	}
	// The last copy deleted: the insight is gone, all of it realized.
	ledgertest.Load(t, st, doc("document.deleted", d(11, 22, 1), "acme", "bob", "d2", "H1", 1000))
	tr = track(d(11, 23, 0))
	if dd := tr[KindDuplicateDocuments]; dd.Status != "realized" || dd.RealizedUnits != 2000 || dd.Current != nil {
		t.Fatalf("after both deletions: %+v", dd)
	}
	// The model insight's lookback still holds the gpt-large tokens.
	if m := tr[KindCheaperModel]; m.Status != "pending" || m.RealizedUnits != 0 {
		t.Fatalf("model insight: %+v", m)
	}
	all, err := e.ListApplied(ctx, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("ListApplied: %d, %v", len(all), err)
	}
	if other, err := e.ListApplied(ctx, "beta"); err != nil || len(other) != 0 {
		t.Fatalf("beta has %d applied, %v", len(other), err)
	}
}
