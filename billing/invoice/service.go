// Package invoice keeps invoices, credit notes, payments, prepaid credit and plan subscriptions
// in the ledger's Pebble DB (keys under b/), and runs the monthly invoice cycle.
//
// Late usage: a finalized invoice keeps the lines it billed, each with the period it bills and a
// stable key (rating.Line.Key). Every later run re-rates the two closed periods before the one
// it invoices (late events are accepted up to 35 days, so two months back covers them), using
// the prices kept on the closed invoice, subtracts what non-void invoices already billed for
// each key, and bills any difference as an adjustment line. The billed state is the sum of
// stored invoices, so a difference is billed exactly once, whichever run sees it first.
package invoice

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/billing/tax"
)

// Options configure a Service.
type Options struct {
	DB        *pebble.DB
	Catalogue pricing.Catalogue
	Usage     rating.Usage
	// Stock reports level (stock) meters; nil means every meter is a flow. See package rating.
	Stock func(meter string) bool
	// Limits is a plan's quota limits by meter, so that no plan the tenant would exceed is
	// suggested (see rating.Rater.Limits). May be nil.
	Limits func(plan string) map[string]int64
	// DefaultPlan is the configuration's tenant → plan mapping, used where no subscription has
	// been recorded. Nil means the catalogue's first plan.
	DefaultPlan func(tenant string) string
	// Tenants lists tenants to consider on every run besides those with usage (configured ones,
	// which may owe a base fee without any usage). May be nil.
	Tenants func() []string
	// TenantStart is a configured tenant's start (config tenants[].start), zero when none: the
	// tenant is billed from that month on. May be nil.
	TenantStart func(tenant string) time.Time
	// Began is where the ledger's history begins (ledger.Store.Began): periods that end before
	// it are refused, since nothing is known about them. Nil: no bound.
	Began  func(ctx context.Context) (time.Time, error)
	Now    func() time.Time // nil: time.Now
	Logger *slog.Logger     // nil: slog.Default()
	// TaxEngine computes invoices' taxes; nil means the catalogue's built-in table
	// (billing.taxes), read at each run so that a configuration reload applies.
	TaxEngine tax.Engine
}

// collectionOf is how a tenant's invoices are collected under a catalogue.
func collectionOf(cat *pricing.Catalogue, tenant string) string { return cat.CollectionOf(tenant) }

// Service is the billing back office. Writes are serialized by one mutex, which is also what
// makes invoice, credit-note and payment numbers sequential and gap-free.
type Service struct {
	db          *pebble.DB
	usage       rating.Usage
	stock       func(string) bool
	limits      func(string) map[string]int64
	defaultPlan func(string) string
	tenants     func() []string
	tenantStart func(string) time.Time
	began       func(context.Context) (time.Time, error)
	now         func() time.Time
	log         *slog.Logger

	catMu sync.RWMutex
	cat   pricing.Catalogue

	mu sync.Mutex // serializes every write

	holds holdCache
	taxes tax.Engine
}

// New builds a Service.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.Usage == nil {
		return nil, fmt.Errorf("invoice: DB and Usage are required")
	}
	if len(o.Catalogue.Plans) == 0 {
		return nil, fmt.Errorf("invoice: the catalogue has no plans")
	}
	s := &Service{db: o.DB, usage: o.Usage, stock: o.Stock, limits: o.Limits, defaultPlan: o.DefaultPlan, tenants: o.Tenants,
		tenantStart: o.TenantStart, began: o.Began, now: o.Now, log: o.Logger, cat: o.Catalogue}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.taxes = o.TaxEngine
	if s.taxes == nil {
		s.taxes = catalogueTaxes{s}
	}
	if s.defaultPlan == nil {
		first := o.Catalogue.Plans[0].Name
		s.defaultPlan = func(string) string { return first }
	}
	return s, nil
}

// SetCatalogue swaps the catalogue (configuration reload). Finalized invoices keep their prices.
func (s *Service) SetCatalogue(c pricing.Catalogue) {
	s.catMu.Lock()
	s.cat = c
	s.catMu.Unlock()
}

// Catalogue returns the catalogue in force.
func (s *Service) Catalogue() pricing.Catalogue {
	s.catMu.RLock()
	defer s.catMu.RUnlock()
	return s.cat
}

// DraftID names the draft of a tenant's period.
func DraftID(p rating.Period, tenant string) string { return "DRAFT-" + p.String() + "-" + tenant }

func parseDraftID(id string) (rating.Period, string, bool) {
	rest, ok := strings.CutPrefix(id, "DRAFT-")
	if !ok || len(rest) < 9 || rest[7] != '-' {
		return rating.Period{}, "", false
	}
	p, err := rating.ParsePeriod(rest[:7])
	if err != nil {
		return rating.Period{}, "", false
	}
	return p, rest[8:], true
}

// Run rates the period for every tenant that existed in it (see existed) and has no finalized
// invoice for it yet. A period that has not begun, or that ends before the ledger's history
// begins, is refused (ErrInvalid). Before the grace period is over the
// invoices are (re)written as drafts; after it they are finalized, numbered and the period is
// marked closed. Running again is safe: finalized invoices are never touched.
func (s *Service) Run(ctx context.Context, p rating.Period) (RunResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cat := s.Catalogue()
	now := s.now()
	res := RunResult{Period: p, Invoices: []string{}}
	began, err := s.checkPeriod(ctx, p, now)
	if err != nil {
		return res, err
	}

	used, err := s.usage.Tenants(ctx, p.Start(), p.End())
	if err != nil {
		return res, fmt.Errorf("invoice run %s: tenants with usage: %w", p, err)
	}
	usedSet := map[string]bool{}
	cand := map[string]bool{}
	for _, t := range used {
		usedSet[t] = true
		cand[t] = true
	}
	if s.tenants != nil {
		for _, t := range s.tenants() {
			cand[t] = true
		}
	}
	st, err := s.loadState(ctx, p, "")
	if err != nil {
		return res, fmt.Errorf("invoice run %s: %w", p, err)
	}
	// Tenants with late usage in the closed periods before p may owe an adjustment.
	for _, q := range []rating.Period{p.Prev(), p.Prev().Prev()} {
		for t := range st.usedIn[q] {
			cand[t] = true
		}
	}
	for t := range st.subs {
		cand[t] = true
	}
	tenants, err := s.existed(ctx, p, began, now, cand, usedSet, st)
	if err != nil {
		return res, fmt.Errorf("invoice run %s: %w", p, err)
	}
	sort.Strings(tenants)
	res.Tenants = len(tenants)

	// Rating reads the ledger and is the expensive part: spread it over the cores.
	invs := make([]*Invoice, len(tenants))
	errs := make([]error, len(tenants))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				invs[i], errs[i] = s.build(ctx, &cat, tenants[i], p, usedSet[tenants[i]], now, st)
			}
		}()
	}
	for i := range tenants {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("invoice run %s: %w", p, err)
	}
	var todo []*Invoice
	for i, inv := range invs {
		if errs[i] == errSkip {
			res.Skipped++
			continue
		}
		if errs[i] != nil {
			return res, errs[i]
		}
		if inv != nil {
			todo = append(todo, inv)
		}
	}

	finalize := !now.Before(p.End().Add(cat.GracePeriod))
	if !finalize {
		b := s.db.NewBatch()
		defer b.Close()
		keep := map[string]bool{}
		for _, inv := range todo {
			keep[inv.Tenant] = true
			if err := putJSON(b, key(pDraft, p.String(), inv.Tenant), inv); err != nil {
				return res, err
			}
			res.Drafts++
			res.Total += inv.Subtotal
			res.Invoices = append(res.Invoices, inv.ID)
		}
		// A draft whose tenant no longer needs an invoice (usage deleted, plan changed) goes.
		if err := scan(s.db, key(pDraft, p.String()+"\x00"), func(k, _ []byte) error {
			if !keep[string(k[len(pDraft)+8:])] {
				return b.Delete(k, nil)
			}
			return nil
		}); err != nil {
			return res, err
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return res, fmt.Errorf("invoice run %s: write drafts: %w", p, err)
		}
		s.log.Info("invoice run: drafts written", "period", p.String(), "drafts", res.Drafts, "finalizable_at", p.End().Add(cat.GracePeriod))
		return res, nil
	}
	const chunk = 1000
	for i := 0; i < len(todo) || i == 0; i += chunk {
		part := todo[i:min(i+chunk, len(todo))]
		if err := s.finalizeLocked(part, now, cat, i+chunk >= len(todo), p, st); err != nil {
			return res, fmt.Errorf("invoice run %s: %w", p, err)
		}
		for _, inv := range part {
			res.Finalized++
			res.Total += inv.Subtotal
			res.Invoices = append(res.Invoices, inv.ID)
		}
	}
	s.log.Info("invoice run: finalized", "period", p.String(), "invoices", res.Finalized, "skipped", res.Skipped)
	return res, nil
}

var errSkip = fmt.Errorf("already invoiced")

// Finalize finalizes one draft now, re-rating it first so that the latest late events count.
// It refuses before the grace period is over (ErrGracePeriod).
func (s *Service) Finalize(ctx context.Context, id string) (*Invoice, error) {
	p, tenant, ok := parseDraftID(id)
	if !ok {
		return nil, fmt.Errorf("finalize %q: %w: not a draft id", id, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cat := s.Catalogue()
	now := s.now()
	var draft Invoice
	found, err := getJSON(s.db, key(pDraft, p.String(), tenant), &draft)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("finalize %s: %w", id, ErrNotFound)
	}
	if at := p.End().Add(cat.GracePeriod); now.Before(at) {
		return nil, fmt.Errorf("finalize %s: %w: late events may still arrive until %s", id, ErrGracePeriod, at.Format(time.RFC3339))
	}
	st, err := s.loadState(ctx, p, tenant)
	if err != nil {
		return nil, err
	}
	inv, err := s.build(ctx, &cat, tenant, p, true, now, st)
	if err == errSkip {
		return nil, fmt.Errorf("finalize %s: %w: the period is already invoiced", id, ErrConflict)
	}
	if err != nil {
		return nil, err
	}
	if err := s.finalizeLocked([]*Invoice{inv}, now, cat, false, p, st); err != nil {
		return nil, fmt.Errorf("finalize %s: %w", id, err)
	}
	return inv, nil
}

// finalizeLocked numbers, credits and stores invoices in one synced batch. The caller holds mu.
func (s *Service) finalizeLocked(invs []*Invoice, now time.Time, cat pricing.Catalogue, closePeriod bool, p rating.Period, st *state) error {
	b := s.db.NewBatch()
	defer b.Close()
	last, err := seq{"invoice"}.last(s.db)
	if err != nil {
		return err
	}
	queued := map[*Invoice]*Collection{} // set on the invoices once stored, not stored inside them
	for _, inv := range invs {
		last++
		inv.Number = fmt.Sprintf("INV-%08d", last)
		inv.ID = inv.Number
		credit := st.credit[inv.Tenant]
		gross := inv.Gross() // taxes included: credit pays what the customer is asked
		switch {
		case gross > 0:
			// Grants first (they may expire; prepaid credit does not), then prepaid credit.
			uses, err := drawGrants(b, st.grants[inv.Tenant], inv.Number, gross, now)
			if err != nil {
				return err
			}
			inv.Grants = uses
			for _, u := range uses {
				inv.GrantsApplied += u.Amount
			}
			inv.CreditApplied = min(credit, gross-inv.GrantsApplied)
			credit -= inv.CreditApplied
		case gross < 0:
			credit -= gross // a net refund of late corrections becomes credit
		}
		inv.AmountDue = max(0, gross-inv.GrantsApplied-inv.CreditApplied)
		inv.AmountRemaining = inv.AmountDue
		t := now
		inv.FinalizedAt = &t
		due := now.Add(cat.PaymentTerms)
		inv.DueAt = &due
		inv.Status = Finalized
		if inv.AmountDue == 0 {
			inv.Status = Paid
			inv.PaidAt = &t
		} else if m := collectionOf(&cat, inv.Tenant); m != pricing.CollectManual {
			c, err := queueCollection(b, inv, m, now)
			if err != nil {
				return err
			}
			queued[inv] = c
		}
		if credit != st.credit[inv.Tenant] {
			if err := putInt(b, key(pCredit, inv.Tenant), int64(credit)); err != nil {
				return err
			}
			st.credit[inv.Tenant] = credit
		}
	}
	data, err := encodeAll(invs)
	if err != nil {
		return err
	}
	for i, inv := range invs {
		if err := s.putInvoiceEncoded(b, inv, data[i]); err != nil {
			return err
		}
		if err := markOpen(b, inv); err != nil {
			return err
		}
		if err := b.Delete(key(pDraft, inv.Period.String(), inv.Tenant), nil); err != nil {
			return err
		}
	}
	if err := (seq{"invoice"}).set(b, last); err != nil {
		return err
	}
	if closePeriod {
		if err := b.Set([]byte(pClosed+p.String()), nil, nil); err != nil {
			return err
		}
		// Drafts left for the period (tenants that turned out to owe nothing) go.
		if err := scan(s.db, key(pDraft, p.String()+"\x00"), func(k, _ []byte) error { return b.Delete(k, nil) }); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store %d invoices: %w", len(invs), err)
	}
	for inv, c := range queued {
		inv.Collection = c
	}
	return nil
}

// encodeAll encodes invoices to JSON on every core: encoding is most of the cost of storing a
// run's invoices, and it happens under the write lock.
func encodeAll(invs []*Invoice) ([][]byte, error) {
	out := make([][]byte, len(invs))
	errs := make([]error, len(invs))
	workers := min(runtime.GOMAXPROCS(0), len(invs))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(invs); i += workers {
				out[i], errs[i] = json.Marshal(invs[i])
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("encode invoice %s: %w", invs[i].ID, err)
		}
	}
	return out, nil
}

func (s *Service) putInvoiceEncoded(b *pebble.Batch, inv *Invoice, data []byte) error {
	if err := b.Set([]byte(pInv+inv.Number), data, nil); err != nil {
		return err
	}
	if err := b.Set(key(pPInv, inv.Period.String(), inv.Tenant, inv.Number), nil, nil); err != nil {
		return err
	}
	return b.Set(key(pTInv, inv.Tenant, inv.Number), nil, nil)
}

// build rates a tenant's period with adjustments for earlier closed periods. It returns errSkip
// when the period already has a non-void invoice, and nil when nothing is owed and the tenant
// had no usage.
func (s *Service) build(ctx context.Context, cat *pricing.Catalogue, tenant string, p rating.Period, used bool, now time.Time, st *state) (*Invoice, error) {
	all := st.invoices[tenant] // the invoices that may bill p or the two periods before it
	for _, inv := range all {
		if inv.Period == p && inv.Status != Void {
			return nil, errSkip
		}
	}
	tcat := cat.ForTenant(tenant) // the tenant's currency and the plans' prices in it
	cat = &tcat
	segs := s.segmentsOf(tenant, st.subs[tenant], p)
	r := &rating.Rater{Catalogue: cat, Usage: s.usage, Stock: s.stock, Limits: s.limits}
	rated, sugg, err := r.RateAndSuggest(ctx, tenant, p, segs)
	if err != nil {
		return nil, err
	}
	rated = append(rated, discounts(st.redeemed[tenant], rated, p)...)
	lines := diff(rated, billed(all, p), p, true)
	adjusted := false
	for _, q := range []rating.Period{p.Prev().Prev(), p.Prev()} {
		if !st.adjustable(tenant, q) {
			continue
		}
		qsegs := s.segmentsOf(tenant, st.subs[tenant], q)
		qcat := pricesOf(cat, all, q)
		qr := &rating.Rater{Catalogue: &qcat, Usage: s.usage, Stock: s.stock}
		qlines, err := qr.Rate(ctx, tenant, q, qsegs)
		if err != nil {
			return nil, err
		}
		qlines = append(qlines, discounts(st.redeemed[tenant], qlines, q)...) // as when q was billed
		adj := diff(qlines, billed(all, q), q, false)
		adjusted = adjusted || len(adj) > 0
		lines = append(lines, adj...)
	}
	inv := &Invoice{ID: DraftID(p, tenant), Tenant: tenant, Period: p, PeriodStart: p.Start(), PeriodEnd: p.End(),
		Status: Draft, Currency: cat.Currency, Seller: cat.Seller, Buyer: cat.Buyer(tenant), Lines: lines,
		Subtotal: rating.Sum(lines), Suggestion: sugg, CreatedAt: now, FinalizableAt: p.End().Add(cat.GracePeriod)}
	seen := map[string]bool{}
	for _, sg := range segs {
		inv.Segments = append(inv.Segments, Segment{Plan: sg.Plan, From: sg.From, To: sg.To})
		if pl, ok := cat.Plan(sg.Plan); ok && !seen[sg.Plan] {
			seen[sg.Plan] = true
			inv.Prices = append(inv.Prices, *pl)
		}
	}
	if !used && !adjusted && inv.Subtotal == 0 && !anyAmount(lines) {
		return nil, nil
	}
	taxes, err := s.taxes.Taxes(ctx, tax.Request{Tenant: tenant, Customer: cat.TaxCustomers[tenant], Currency: cat.Currency, Net: inv.Subtotal})
	if err != nil {
		return nil, fmt.Errorf("taxes of %s: %w", inv.ID, err)
	}
	inv.Taxes, inv.Tax = taxes, tax.Added(taxes)
	inv.Total = inv.Gross()
	inv.AmountDue = max(0, inv.Total)
	inv.AmountRemaining = inv.AmountDue
	return inv, nil
}

func anyAmount(lines []rating.Line) bool {
	for _, l := range lines {
		if l.Amount != 0 {
			return true
		}
	}
	return false
}

// pricesOf is the catalogue with the plans kept on the period's invoice, so a closed period is
// re-rated at the prices it was billed at.
func pricesOf(cat *pricing.Catalogue, invs []*Invoice, q rating.Period) pricing.Catalogue {
	out := *cat
	for _, inv := range invs {
		if inv.Period != q || inv.Status == Void || len(inv.Prices) == 0 {
			continue
		}
		plans := append([]pricing.Plan(nil), inv.Prices...)
		kept := pricing.Catalogue{Plans: inv.Prices}
		for _, pl := range cat.Plans {
			if _, ok := kept.Plan(pl.Name); !ok {
				plans = append(plans, pl)
			}
		}
		out.Plans = plans
		break
	}
	return out
}

type billedLine struct {
	qty    int64
	amount money.Amount
	line   rating.Line
}

// billed sums, per line key, what non-void invoices billed for period q.
func billed(invs []*Invoice, q rating.Period) map[string]*billedLine {
	out := map[string]*billedLine{}
	for _, inv := range invs {
		if inv.Status == Void {
			continue
		}
		for _, l := range inv.Lines {
			if l.Period != q {
				continue
			}
			b := out[l.Key]
			if b == nil {
				b = &billedLine{line: l}
				out[l.Key] = b
			}
			b.qty += l.Quantity
			b.amount += l.Amount
		}
	}
	return out
}

// diff returns the lines still to bill: rated lines nobody billed yet (main period only, as
// they are), and for keys already billed the difference as an adjustment line.
func diff(rated []rating.Line, done map[string]*billedLine, q rating.Period, main bool) []rating.Line {
	var out []rating.Line
	seen := map[string]bool{}
	for _, l := range rated {
		seen[l.Key] = true
		b, ok := done[l.Key]
		if !ok && main {
			out = append(out, l)
			continue
		}
		var bq int64
		var ba money.Amount
		if ok {
			bq, ba = b.qty, b.amount
		}
		if l.Quantity != bq || l.Amount != ba {
			out = append(out, adjustment(l, q, l.Quantity-bq, l.Amount-ba))
		}
	}
	keys := make([]string, 0, len(done))
	for k := range done {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if b := done[k]; !seen[k] && (b.qty != 0 || b.amount != 0) {
			out = append(out, adjustment(b.line, q, -b.qty, -b.amount))
		}
	}
	return out
}

func adjustment(l rating.Line, q rating.Period, dq int64, da money.Amount) rating.Line {
	return rating.Line{Key: l.Key, Period: q, Kind: rating.KindAdjustment,
		Description: "Adjustment for " + q.String() + ": " + l.Description, Plan: l.Plan, Meter: l.Meter,
		Model: l.Model, From: l.From, To: l.To, Quantity: dq, Exact: fmt.Sprint(int64(da)), Amount: da}
}

func (s *Service) periodClosed(q rating.Period) (bool, error) {
	_, ok, err := get(s.db, []byte(pClosed+q.String()))
	return ok, err
}

// Get returns an invoice by number or draft id.
func (s *Service) Get(ctx context.Context, id string) (*Invoice, error) {
	inv, err := s.getStored(id)
	if err != nil || inv.Number == "" {
		return inv, err
	}
	if inv.Collection, err = s.Collection(ctx, inv.Number); err != nil {
		return nil, fmt.Errorf("invoice %s: %w", id, err)
	}
	return inv, nil
}

// getStored reads an invoice as stored, without its collection record.
func (s *Service) getStored(id string) (*Invoice, error) {
	var inv Invoice
	k := []byte(pInv + id)
	if p, tenant, ok := parseDraftID(id); ok {
		k = key(pDraft, p.String(), tenant)
	}
	found, err := getJSON(s.db, k, &inv)
	if err != nil {
		return nil, fmt.Errorf("invoice %s: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("invoice %s: %w", id, ErrNotFound)
	}
	return &inv, nil
}

// Filter selects invoices to list; zero fields match everything.
type Filter struct {
	Tenant string
	Period *rating.Period
	Status Status
}

// List returns matching invoices: finalized ones by number, then drafts.
func (s *Service) List(ctx context.Context, f Filter) ([]*Invoice, error) {
	var out []*Invoice
	keep := func(inv *Invoice) bool {
		return (f.Tenant == "" || inv.Tenant == f.Tenant) && (f.Period == nil || inv.Period == *f.Period) &&
			(f.Status == "" || inv.Status == f.Status)
	}
	decode := func(_, v []byte) error {
		var inv Invoice
		if err := jsonUnmarshal(v, &inv); err != nil {
			return err
		}
		if keep(&inv) {
			if inv.Number != "" {
				var err error
				if inv.Collection, err = s.Collection(ctx, inv.Number); err != nil {
					return err
				}
			}
			out = append(out, &inv)
		}
		return nil
	}
	// getKept reads the finalized invoices an index names, keeping the matching ones.
	getKept := func(nums []string) error {
		for _, n := range nums {
			inv, err := s.Get(ctx, n)
			if err != nil {
				return err
			}
			if keep(inv) {
				out = append(out, inv)
			}
		}
		return nil
	}
	if f.Tenant != "" && f.Status != Draft {
		var nums []string
		prefix := append(key(pTInv, f.Tenant), 0)
		if err := scan(s.db, prefix, func(k, _ []byte) error {
			nums = append(nums, string(k[len(prefix):]))
			return nil
		}); err != nil {
			return nil, err
		}
		if err := getKept(nums); err != nil {
			return nil, err
		}
	} else if f.Status != Draft && f.Period != nil {
		// One period of every tenant: the period index names its invoices, so the other
		// periods' invoices are neither read nor decoded (a year of history is 12 times the work).
		var nums []string
		prefix := key(pPInv, f.Period.String()+"\x00")
		if err := scan(s.db, prefix, func(k, _ []byte) error {
			if i := bytes.LastIndexByte(k, 0); i >= len(prefix) {
				nums = append(nums, string(k[i+1:]))
			}
			return nil
		}); err != nil {
			return nil, err
		}
		sort.Strings(nums) // number order, as the scan of b/inv/ below gives
		if err := getKept(nums); err != nil {
			return nil, err
		}
	} else if f.Status != Draft {
		if err := scan(s.db, []byte(pInv), decode); err != nil {
			return nil, err
		}
	}
	if f.Status == "" || f.Status == Draft {
		prefix := []byte(pDraft)
		if f.Period != nil {
			prefix = key(pDraft, f.Period.String()+"\x00")
		}
		if err := scan(s.db, prefix, decode); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// catalogueTaxes is the built-in tax table of the catalogue in force.
type catalogueTaxes struct{ s *Service }

func (c catalogueTaxes) Taxes(ctx context.Context, r tax.Request) ([]tax.Line, error) {
	t := c.s.Catalogue().Taxes
	return t.Taxes(ctx, r)
}
