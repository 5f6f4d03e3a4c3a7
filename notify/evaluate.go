package notify

import (
	"context"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"
	"time"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Usage is what the evaluator reads of the ledger: a meter's exact usage for a tenant in the
// current period (the calendar month for flow meters, the level for stock meters), the meter's
// definition, and the quota limit in force.
type Usage interface {
	Current(meterName, tenant string, now time.Time) (int64, bool)
	Meter(name string) (*meter.Def, bool)
}

// Limits returns the quota limit of a tenant's plan in force for a meter (0, false: no limit).
type Limits func(ctx context.Context, tenant, meterName string) (int64, bool)

// Invoices returns a tenant's finalized invoices (billing's, durable), any order.
type Invoices func(ctx context.Context, tenant string) ([]InvoiceInfo, error)

// Summaries computes a tenant's executive summary at a time.
type Summaries func(ctx context.Context, tenant string, now time.Time) (Summary, error)

// Evaluator fires rules whose condition holds. Conditions are pure functions of durable state
// (the ledger's period totals and the plan in force), and an event's key is (rule, period): so
// evaluating after every group commit, at start and on a timer fires each rule once per
// period, whatever crashes in between (docs/notifications.md).
type Evaluator struct {
	Store  *Store
	Usage  Usage
	Limits Limits
	Log    *slog.Logger
	Now    func() time.Time
	// Fired is told of every event written (the dispatcher's wake-up).
	Fired func()
	// OnEvent, when set, counts the events written, by condition kind.
	OnEvent func(kind string)
	// Summaries, when set, feeds schedule_summary rules, evaluated like invoice rules (at start
	// and every interval): a summary is sent at most one interval after its scheduled minute.
	Summaries Summaries
	// MinGap spaces the evaluations that commits trigger (NewEvaluator: 50ms).
	MinGap time.Duration
	// Invoices, when set, feeds invoice_finalized rules. They are evaluated at start and every
	// interval, not after every ledger commit (a commit never finalizes an invoice).
	Invoices Invoices

	poke chan struct{}

	// mu serialises evaluations. It guards the caches: the rules as of a generation, and the
	// (rule, period) pairs known to have fired, so that an evaluation after every commit reads
	// neither the rules nor the fired markers from the store again.
	mu       sync.Mutex
	rules    []Rule
	rulesGen uint64
	loaded   bool
	fired    map[string]bool
}

// Poke asks for an evaluation soon; it never blocks (the ledger's writer calls it after each
// commit), and pokes while one is pending fold into it.
func (e *Evaluator) Poke() {
	select {
	case e.poke <- struct{}{}:
	default:
	}
}

// NewEvaluator returns an evaluator (its fields may still be set before Run).
func NewEvaluator(s *Store, u Usage, l Limits, log *slog.Logger) *Evaluator {
	return &Evaluator{Store: s, Usage: u, Limits: l, Log: log, Now: time.Now, MinGap: 50 * time.Millisecond, poke: make(chan struct{}, 1)}
}

// Run evaluates at start, on every poke and every interval (plan changes and reloads are not
// commits), until ctx is done.
func (e *Evaluator) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	full := true
	for {
		last := time.Now()
		if _, err := e.evaluate(ctx, full); err != nil && ctx.Err() == nil {
			e.Log.Error("evaluating notification rules", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.poke:
			full = false
			// Under a stream of commits, evaluations are spaced by MinGap at least: the pokes
			// meanwhile fold into the next one, and ingestion keeps the CPU.
			if wait := e.MinGap - time.Since(last); wait > 0 {
				gap := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					gap.Stop()
					return
				case <-gap.C:
				}
			}
		case <-t.C:
			full = true
		}
	}
}

// Evaluate checks every enabled rule once and returns how many events it wrote.
func (e *Evaluator) Evaluate(ctx context.Context) (int, error) { return e.evaluate(ctx, true) }

// evaluate checks the rules; the invoice rules only when full.
func (e *Evaluator) evaluate(ctx context.Context, full bool) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	// The generation is read before the rules: a change in between re-reads them next time.
	if gen := e.Store.RulesGeneration(); !e.loaded || gen != e.rulesGen {
		rules, err := e.Store.Rules(ctx, "")
		if err != nil {
			return 0, err
		}
		e.rules, e.rulesGen, e.loaded = rules, gen, true
	}
	if e.fired == nil || len(e.fired) > 100000 {
		e.fired = map[string]bool{}
	}
	now := e.Now().UTC()
	fired := 0
	for _, r := range e.rules {
		if r.Disabled {
			continue
		}
		var events []Event
		if r.Condition.Kind == CondScheduleSummary {
			if !full || e.Summaries == nil {
				continue
			}
			ev, ok, err := e.scheduled(ctx, r, now)
			if err != nil {
				return fired, fmt.Errorf("rule %s: %w", r.ID, err)
			}
			if ok {
				events = []Event{ev}
			}
		} else if r.Condition.Kind == CondInvoiceFinalized {
			if !full || e.Invoices == nil {
				continue
			}
			evs, err := e.invoiceEvents(ctx, r, now)
			if err != nil {
				return fired, fmt.Errorf("rule %s: %w", r.ID, err)
			}
			events = evs
		} else if ev, ok := e.check(ctx, r, now); ok {
			events = []Event{ev}
		}
		for _, ev := range events {
			key := r.ID + sep + ev.Period
			if e.fired[key] {
				continue
			}
			wrote, err := e.Store.Fire(r, ev, now)
			if err != nil {
				return fired, fmt.Errorf("rule %s: %w", r.ID, err)
			}
			e.fired[key] = true
			if wrote {
				fired++
				e.Log.Info("notification rule fired", "rule", r.ID, "tenant", r.Tenant, "type", ev.Type, "key", ev.Period)
				if e.OnEvent != nil {
					e.OnEvent(r.Condition.Kind)
				}
			}
		}
	}
	if fired > 0 && e.Fired != nil {
		e.Fired()
	}
	return fired, nil
}

// check evaluates one rule: the event to fire, if its condition holds now.
func (e *Evaluator) check(ctx context.Context, r Rule, now time.Time) (Event, bool) {
	def, ok := e.Usage.Meter(r.Meter)
	if !ok {
		return Event{}, false
	}
	used, ok := e.Usage.Current(r.Meter, r.Tenant, now)
	if !ok {
		return Event{}, false
	}
	ev := Event{RuleID: r.ID, Version: r.Version, Tenant: r.Tenant, Meter: r.Meter, Unit: def.Unit,
		Period: now.Format("2006-01"), Condition: r.Condition, Used: used, At: now}
	switch r.Condition.Kind {
	case CondQuotaPercent:
		limit, ok := e.Limits(ctx, r.Tenant, r.Meter)
		// Exact, in integers: used/limit >= percent/100.
		if !ok || !reached(used, limit, r.Condition.Percent) {
			return Event{}, false
		}
		ev.Type, ev.Limit = "quota.percent_reached", limit
	case CondUsageAmount:
		if used < r.Condition.Amount {
			return Event{}, false
		}
		ev.Type = "usage.amount_reached"
		if limit, ok := e.Limits(ctx, r.Tenant, r.Meter); ok {
			ev.Limit = limit
		}
	default:
		return Event{}, false
	}
	return ev, true
}

// MaxScheduleDelay: a scheduled summary missed (the exporter down at its minute) is still sent
// this long after; older ones are skipped (the next occurrence comes).
const MaxScheduleDelay = 24 * time.Hour

// scheduled is the event of a schedule_summary rule whose latest scheduled minute has come and
// was not sent yet, keyed by that minute. The summary is computed only then.
func (e *Evaluator) scheduled(ctx context.Context, r Rule, now time.Time) (Event, bool, error) {
	cr, err := ParseCron(r.Condition.Cron)
	if err != nil {
		return Event{}, false, err
	}
	loc, err := r.Condition.location()
	if err != nil {
		return Event{}, false, err
	}
	at, ok := cr.Prev(now, loc)
	if !ok || at.Before(r.Created) || now.Sub(at) > MaxScheduleDelay {
		return Event{}, false, nil
	}
	key := at.UTC().Format(time.RFC3339)
	if e.fired[r.ID+sep+key] {
		return Event{}, false, nil
	}
	if done, err := e.Store.HasFired(r.ID, key); err != nil || done {
		if done {
			e.fired[r.ID+sep+key] = true
		}
		return Event{}, false, err
	}
	sum, err := e.Summaries(ctx, r.Tenant, now)
	if err != nil {
		return Event{}, false, fmt.Errorf("executive summary: %w", err)
	}
	return Event{Type: "summary.scheduled", RuleID: r.ID, Version: r.Version, Tenant: r.Tenant, Period: key,
		Condition: r.Condition, Summary: &sum, At: now}, true, nil
}

// invoiceEvents are the events of an invoice_finalized rule: one per invoice finalized since
// the rule was created, keyed by the invoice number.
func (e *Evaluator) invoiceEvents(ctx context.Context, r Rule, now time.Time) ([]Event, error) {
	invs, err := e.Invoices(ctx, r.Tenant)
	if err != nil {
		return nil, fmt.Errorf("listing invoices: %w", err)
	}
	var out []Event
	for _, inv := range invs {
		if inv.Number == "" || inv.FinalizedAt.Before(r.Created) {
			continue
		}
		inv := inv
		out = append(out, Event{Type: "invoice.finalized", RuleID: r.ID, Version: r.Version, Tenant: r.Tenant,
			Period: inv.Number, Condition: r.Condition, Invoice: &inv, At: now})
	}
	return out, nil
}

// reached reports used*100 >= percent*limit, exactly (128-bit products: no overflow whatever
// the limit).
func reached(used, limit, percent int64) bool {
	if limit <= 0 || used <= 0 || percent <= 0 {
		return false
	}
	uh, ul := bits.Mul64(uint64(used), 100)
	lh, ll := bits.Mul64(uint64(limit), uint64(percent))
	return uh > lh || (uh == lh && ul >= ll)
}
