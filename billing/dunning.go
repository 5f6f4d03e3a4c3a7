package billing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/stripecollect"
	"github.com/usagemeter/usagemeter/exporter/audit"
)

// Auditor appends to the exporter's audit log (audit.Log implements it).
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (audit.Entry, error)
}

// dunningMetrics count the dunning steps (the reminders, until notifications are sent) and the
// tenants on hold.
type dunningMetrics struct {
	steps *prometheus.CounterVec
	holds prometheus.GaugeFunc
}

func newDunningMetrics(s *Service) *dunningMetrics {
	return &dunningMetrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usage_exporter_billing_dunning_steps_total",
			Help: "Dunning steps taken on overdue invoices, by step (1-based) and action (reminder, stripe_retry_charge, stripe_resend), and whether the action succeeded.",
		}, []string{"step", "action", "result"}),
		holds: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "usage_exporter_billing_dunning_holds",
			Help: "Tenants whose quota admission is denied until they pay an overdue invoice (dunning consequence hard_deny).",
		}, func() float64 {
			h, err := s.Holds(context.Background())
			if err != nil {
				return -1
			}
			return float64(len(h))
		}),
	}
}

// Collectors are the billing metrics, for the exporter's registry.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.dun.steps, s.dun.holds}
}

// DunningResult reports a dunning run.
type DunningResult struct {
	Overdue int      `json:"overdue"` // overdue invoices looked at
	Steps   int      `json:"steps"`   // steps taken by this run
	Holds   int      `json:"holds"`   // tenants put on hold by this run
	Errors  []string `json:"errors,omitempty"`
}

// RunDunning takes the due dunning step of every overdue invoice: the plan's schedule (the plan
// of the invoice's last segment) says which step the time since the due date reaches; a step
// not yet taken is taken once (a run that missed steps takes only the latest). A step is a
// reminder (a log line and usage_exporter_billing_dunning_steps_total), for an invoice sent to
// Stripe also a retried charge (charge_automatically) or the invoice sent again
// (send_invoice), and after the last step the plan's consequence: hard_deny puts the tenant on
// hold, and quota admission denies it until the invoice is settled. Every step is recorded on
// the invoice's dunning record and in the audit log.
func (s *Service) RunDunning(ctx context.Context) (DunningResult, error) {
	s.dunMu.Lock()
	defer s.dunMu.Unlock()
	now := s.Now()
	invs, err := s.Overdue(ctx, now)
	if err != nil {
		return DunningResult{}, fmt.Errorf("dunning: %w", err)
	}
	res := DunningResult{Overdue: len(invs)}
	cat := s.Catalogue()
	var (
		col    *stripecollect.Collector
		colErr error
	)
	for _, inv := range invs {
		plan := ""
		if len(inv.Segments) > 0 {
			plan = inv.Segments[len(inv.Segments)-1].Plan
		}
		sched := cat.DunningOf(plan)
		step := sched.StepAt(*inv.DueAt, now)
		d, err := s.DunningOf(ctx, inv.Number)
		if err != nil {
			return res, err
		}
		if d == nil {
			d = &invoice.Dunning{Invoice: inv.Number, Tenant: inv.Tenant, Plan: plan}
		}
		d.Steps = len(sched.RetryDays)
		last := step == len(sched.RetryDays) && sched.Consequence == pricing.ConsequenceHardDeny
		if step == 0 || step <= d.Step {
			// Held once, the hold lifted by a payment, and the invoice reopened since (a
			// refund): the consequence applies again.
			if _, held, err := s.Hold(ctx, inv.Tenant); err == nil && last && d.Held && !held {
				e := invoice.DunningEntry{Step: step, At: now.UTC(), Action: "hold", Result: "ok"}
				if err := s.RecordDunningStep(ctx, d, e, true); err == nil {
					res.Holds++
					s.audit(ctx, inv.Tenant, inv.Number, fmt.Sprintf("dunning hold again on %s: reopened after its last step", inv.Number), true)
				}
			}
			continue
		}
		e := invoice.DunningEntry{Step: step, At: now.UTC(), Action: "reminder", Result: "ok"}
		if c := inv.Collection; c != nil && c.Status == invoice.CollectSent {
			if col == nil && colErr == nil {
				col, colErr = stripecollect.New(stripecollect.Options{Store: s.Service, APIKey: cat.Stripe.APIKey(), Settings: cat.Stripe,
					HTTPClient: s.coll.http, Logger: s.log})
			}
			if col != nil {
				action, rerr := col.Retry(ctx, inv, step)
				e.Action = action
				if rerr != nil {
					e.Result = rerr.Error()
				}
			} else {
				e.Result = "reminder only: " + colErr.Error()
			}
		}
		hold := last
		if err := s.RecordDunningStep(ctx, d, e, hold); err != nil {
			if errors.Is(err, invoice.ErrConflict) {
				continue // settled meanwhile
			}
			return res, err
		}
		res.Steps++
		result := "ok"
		if e.Result != "ok" {
			result = "error"
		}
		s.dun.steps.WithLabelValues(strconv.Itoa(step), e.Action, result).Inc()
		s.log.Warn("dunning reminder: invoice overdue", "invoice", inv.Number, "tenant", inv.Tenant, "plan", plan,
			"step", step, "of", len(sched.RetryDays), "due", inv.DueAt.UTC().Format(time.DateOnly),
			"amount_remaining", int64(inv.AmountRemaining), "action", e.Action, "result", e.Result, "hold", hold)
		reason := fmt.Sprintf("dunning step %d of %d on %s: %s (%s)", step, len(sched.RetryDays), inv.Number, e.Action, e.Result)
		if hold {
			res.Holds++
			reason += "; quota admission now denies the tenant until the invoice is settled"
		}
		s.audit(ctx, inv.Tenant, inv.Number, reason, e.Result == "ok")
	}
	if len(invs) > 0 {
		s.log.Info("dunning run", "overdue", res.Overdue, "steps", res.Steps, "holds", res.Holds)
	}
	return res, nil
}

func (s *Service) audit(ctx context.Context, tenant, number, reason string, ok bool) {
	if s.Audit == nil {
		return
	}
	if _, err := s.Audit.Append(ctx, audit.Entry{Time: s.Now().UTC(), Subject: "billing/dunning", Kind: "none",
		Action: "billing.dunning", Path: number, Tenant: tenant, Allow: ok, Reason: reason}); err != nil {
		s.log.Error("audit of a dunning step failed", "invoice", number, "err", err)
	}
}

// DunningLoop runs RunDunning, and records expired credit grants, every interval until ctx ends.
func (s *Service) DunningLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.RunDunning(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("dunning run failed", "err", err)
		}
		if _, err := s.ExpireGrants(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("expiring credit grants failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// BillingHold is what quota admission asks: the reason the tenant is on a dunning hold, "" when
// it is not. An error reading the holds is logged and does not deny.
func (s *Service) BillingHold(ctx context.Context, tenant string) string {
	r, held, err := s.Hold(ctx, tenant)
	if err != nil {
		s.log.Error("reading dunning holds", "err", err)
		return ""
	}
	if !held {
		return ""
	}
	return r
}

func (s *Service) dunning(w http.ResponseWriter, r *http.Request) {
	res, err := s.RunDunning(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Service) invoiceDunning(w http.ResponseWriter, r *http.Request) {
	inv, ok := s.load(w, r)
	if !ok {
		return
	}
	d, err := s.DunningOf(r.Context(), inv.Number)
	if err != nil {
		writeErr(w, err)
		return
	}
	if d == nil {
		d = &invoice.Dunning{Invoice: inv.Number, Tenant: inv.Tenant, History: []invoice.DunningEntry{}}
	}
	writeJSON(w, http.StatusOK, d)
}
