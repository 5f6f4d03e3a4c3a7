package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Backoff says when a failed delivery is tried again, and when it is given up.
type Backoff struct {
	// First is the delay after the first failure; each failure doubles it, up to Max.
	First, Max time.Duration
	// GiveUp: a delivery still failing this long after its event is dead-lettered (at least a
	// day by default: a receiver down over a weekend night still gets its events).
	GiveUp time.Duration
}

// DefaultBackoff: 30 s, 1 min, 2 min, ... 4 h, 4 h, ...; the first attempt failing 26 h or more
// after the event dead-letters the delivery (the 16th, about 28 h after it).
var DefaultBackoff = Backoff{First: 30 * time.Second, Max: 4 * time.Hour, GiveUp: 26 * time.Hour}

// delay after the n-th failed attempt (n >= 1).
func (b Backoff) delay(n int) time.Duration {
	d := b.First
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Dispatcher delivers the outbox's pending deliveries. One goroutine claims due deliveries
// from the queue and hands them to Workers senders; each outcome is recorded (attempt log,
// new state) in one synced batch before the delivery can be claimed again.
type Dispatcher struct {
	Store   *Store
	SMTP    *SMTP
	Client  *http.Client
	Backoff Backoff
	Workers int
	Log     *slog.Logger
	Now     func() time.Time
	Metrics *Metrics

	wake chan struct{}
}

// NewDispatcher returns a dispatcher with the default backoff, 4 workers and a 10 s webhook
// timeout.
func NewDispatcher(s *Store, smtp *SMTP, log *slog.Logger) *Dispatcher {
	// Redirects are not followed: a 3xx is a failed attempt (the signed request goes where
	// the rule says, nowhere else).
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Dispatcher{Store: s, SMTP: smtp, Client: client, Backoff: DefaultBackoff,
		Workers: 4, Log: log, Now: time.Now, wake: make(chan struct{}, 1)}
}

// Wake asks the dispatcher to look at the queue now (new events, a replay); never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done. Deliveries in flight when ctx ends finish their attempt (or
// time out) and are recorded; one interrupted harder (kill -9) is still pending and is sent
// again at start, with the same idempotency key.
func (d *Dispatcher) Run(ctx context.Context, idle time.Duration) {
	for {
		next, err := d.Drain(ctx)
		if err != nil && ctx.Err() == nil {
			d.Log.Error("dispatching notifications", "err", err)
		}
		wait := idle
		if !next.IsZero() {
			wait = min(max(time.Until(next), time.Millisecond), idle)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Drain sends every delivery due now, in rounds, and returns when the next one is due (zero:
// none pending).
func (d *Dispatcher) Drain(ctx context.Context) (time.Time, error) {
	workers := max(d.Workers, 1)
	// The pending gauge is counted once per drain (a scan of the queue), not per round.
	defer d.observePending(ctx)
	for {
		ids, next, err := d.Store.Due(ctx, d.Now(), 256)
		if err != nil {
			return time.Time{}, err
		}
		if len(ids) == 0 {
			return next, nil
		}
		work := make(chan string)
		var wg sync.WaitGroup
		var errs []error
		var mu sync.Mutex
		for range min(workers, len(ids)) {
			wg.Go(func() {
				for id := range work {
					if err := d.attempt(context.WithoutCancel(ctx), id); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			})
		}
		for _, id := range ids {
			work <- id
		}
		close(work)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return time.Time{}, err
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
	}
}

func (d *Dispatcher) observePending(ctx context.Context) {
	if d.Metrics == nil {
		return
	}
	if n, err := d.Store.Pending(ctx); err == nil {
		d.Metrics.pending.Set(float64(n))
	}
}

// attempt sends one delivery once and records the outcome.
func (d *Dispatcher) attempt(ctx context.Context, id string) error {
	del, err := d.Store.Delivery(id)
	if err != nil {
		return fmt.Errorf("delivery %s: %w", id, err)
	}
	if del.State != StatePending {
		return nil
	}
	now := d.Now().UTC()
	a := Attempt{N: del.Attempts + 1, At: now}
	// A delivery whose event or rule version cannot be read is dead-lettered at once rather than
	// retried (the outbox writes them in one batch: this is damage, for an operator to see).
	ev, err := d.Store.Event(del.EventID)
	if err != nil {
		return d.deadLetter(del, a, fmt.Errorf("reading event %s: %w", del.EventID, err))
	}
	rule, err := d.Store.RuleVersion(ev.RuleID, ev.Version)
	if err != nil {
		return d.deadLetter(del, a, fmt.Errorf("reading rule %s version %d: %w", ev.RuleID, ev.Version, err))
	}
	targets := rule.Targets()
	if del.Channel >= len(targets) {
		return d.deadLetter(del, a, fmt.Errorf("rule %s version %d has no channel %d", rule.ID, rule.Version, del.Channel))
	}
	if del.Tier > 0 && del.Replays == 0 {
		// An escalation tier is sent only if nobody acknowledged the event before it was due.
		ack, acked, err := d.Store.Acknowledged(ev.ID)
		if err != nil {
			return err
		}
		if acked {
			if _, err := d.Store.Cancel(del, fmt.Sprintf("acknowledged by %s at %s", ack.By, ack.At.Format(time.RFC3339))); err != nil {
				return err
			}
			if d.Metrics != nil {
				d.Metrics.observeCancelled(del.Type)
			}
			return nil
		}
	}
	a.Status, err = d.send(ctx, targets[del.Channel].Channel, del, ev, now)
	next := del
	next.Attempts = a.N
	switch {
	case err == nil:
		a.OK = true
		next.State, next.Delivered, next.LastError = StateDelivered, now, ""
	case now.Sub(del.Since) >= d.Backoff.GiveUp:
		a.Error = err.Error()
		next.State, next.LastError = StateDead, err.Error()
	default:
		a.Error = err.Error()
		next.NextAt, next.LastError = now.Add(d.Backoff.delay(a.N)), err.Error()
	}
	if err := d.Store.Record(del, next, a); err != nil {
		return err
	}
	if d.Metrics != nil {
		d.Metrics.observe(del.Type, next.State, a.OK, now.Sub(ev.At))
	}
	if !a.OK {
		d.Log.Warn("notification delivery failed", "delivery", id, "channel", del.Type, "attempt", a.N, "state", next.State, "next_at", next.NextAt, "err", a.Error)
	}
	return nil
}

func (d *Dispatcher) deadLetter(del Delivery, a Attempt, err error) error {
	a.Error = err.Error()
	next := del
	next.Attempts, next.State, next.LastError = a.N, StateDead, a.Error
	d.Log.Error("notification delivery dead-lettered", "delivery", del.ID, "err", err)
	if rerr := d.Store.Record(del, next, a); rerr != nil {
		return rerr
	}
	if d.Metrics != nil {
		d.Metrics.observe(del.Type, StateDead, false, 0)
	}
	return nil
}

func (d *Dispatcher) send(ctx context.Context, c Channel, del Delivery, ev Event, now time.Time) (int, error) {
	switch c.Type {
	case ChannelWebhook:
		payload := map[string]any{"type": ev.Type, "timestamp": ev.At, "data": ev}
		if del.Tier > 0 {
			payload["escalation_tier"] = del.Tier
		}
		body, err := json.Marshal(payload)
		if err != nil {
			return 0, fmt.Errorf("encoding the payload: %w", err)
		}
		return postWebhook(ctx, d.Client, c.URL, c.Secret, del.ID, now, body)
	case ChannelEmail:
		if d.SMTP == nil {
			return 0, errors.New("e-mail channel: no SMTP server configured (notifications.smtp)")
		}
		m, err := mailOf(ev)
		if err != nil {
			return 0, err
		}
		m.To, m.MessageID = c.To, del.ID
		if del.Tier > 0 {
			m.Subject = fmt.Sprintf("Escalation (tier %d, not acknowledged): %s", del.Tier, m.Subject)
		}
		return 0, d.SMTP.send(ctx, m)
	default:
		return 0, fmt.Errorf("channel type %q", c.Type)
	}
}

var mailHTML = template.Must(template.New("mail").Parse(`<!doctype html>
<html><body style="font-family:sans-serif">
<h2>{{.Title}}</h2>
<table cellpadding="4">
{{range .Rows}}<tr><th align="left">{{index . 0}}</th><td>{{index . 1}}</td></tr>
{{end}}</table>
<p style="color:#666">Sent by usagemeter, rule {{.Rule}}. Delivery key {{.Event}}.</p>
</body></html>
`))

// mailOf renders an event as an e-mail (subject, plain text, HTML).
func mailOf(ev Event) (Mail, error) {
	var title string
	var rows [][2]string
	if sum := ev.Summary; sum != nil {
		title = fmt.Sprintf("%s: executive summary, %s to %s", ev.Tenant, sum.From.Format("2 Jan"), sum.To.Format("2 Jan 2006"))
		for _, k := range sum.KPIs {
			change := ""
			if k.Percent != nil {
				change = fmt.Sprintf(" (%+.1f%% on the 30 days before: %d)", *k.Percent, k.Previous)
			}
			rows = append(rows, [2]string{k.Name, strings.TrimSpace(fmt.Sprintf("%d %s", k.Value, k.Unit)) + change})
		}
		rows = append(rows, [2]string{"Insights", fmt.Sprintf("%d", sum.InsightCount)})
		if sum.InsightSavings > 0 {
			rows = append(rows, [2]string{"Potential savings", formatMinor(sum.InsightSavings, sum.Exponent) + " " + sum.Currency})
		}
		for _, n := range sum.Notes {
			rows = append(rows, [2]string{"Note", n})
		}
	} else if inv := ev.Invoice; inv != nil {
		title = fmt.Sprintf("%s: invoice %s is ready", ev.Tenant, inv.Number)
		rows = [][2]string{{"Tenant", ev.Tenant}, {"Invoice", inv.Number}, {"Billing period", inv.Period},
			{"Amount due", formatMinor(inv.AmountDue, inv.Exponent) + " " + inv.Currency},
			{"Finalized at", inv.FinalizedAt.Format(time.RFC3339)}}
		if !inv.DueAt.IsZero() {
			rows = append(rows, [2]string{"Due", inv.DueAt.Format("2006-01-02")})
		}
	} else {
		title = fmt.Sprintf("%s: %s reached %d in %s", ev.Tenant, ev.Meter, ev.Used, ev.Period)
		if ev.Condition.Kind == CondQuotaPercent {
			title = fmt.Sprintf("%s: %s reached %d%% of its quota in %s", ev.Tenant, ev.Meter, ev.Condition.Percent, ev.Period)
		}
		rows = [][2]string{
			{"Tenant", ev.Tenant}, {"Meter", ev.Meter}, {"Period", ev.Period},
			{"Used", fmt.Sprintf("%d %s", ev.Used, ev.Unit)},
		}
		if ev.Limit > 0 {
			rows = append(rows, [2]string{"Quota limit", fmt.Sprintf("%d %s", ev.Limit, ev.Unit)})
		}
	}
	switch ev.Condition.Kind {
	case CondQuotaPercent:
		rows = append(rows, [2]string{"Threshold", fmt.Sprintf("%d%% of the quota", ev.Condition.Percent)})
	case CondUsageAmount:
		rows = append(rows, [2]string{"Threshold", fmt.Sprintf("%d %s", ev.Condition.Amount, ev.Unit)})
	}
	rows = append(rows, [2]string{"Detected at", ev.At.Format(time.RFC3339)})
	var text bytes.Buffer
	text.WriteString(title + "\n\n")
	tw := tabwriter.NewWriter(&text, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	_ = tw.Flush()
	fmt.Fprintf(&text, "\nSent by usagemeter, rule %s. Delivery key %s.\n", ev.RuleID, ev.ID)
	var html bytes.Buffer
	if err := mailHTML.Execute(&html, map[string]any{"Title": title, "Rows": rows, "Rule": ev.RuleID, "Event": ev.ID}); err != nil {
		return Mail{}, fmt.Errorf("rendering the e-mail: %w", err)
	}
	return Mail{Subject: title, Text: text.String(), HTML: html.String()}, nil
}

// formatMinor renders an amount of minor units with the currency's digits, exactly (no float).
func formatMinor(v int64, exp int) string {
	if exp <= 0 {
		return strconv.FormatInt(v, 10)
	}
	sign := ""
	u := uint64(v)
	if v < 0 {
		sign, u = "-", uint64(-v)
	}
	digits := strconv.FormatUint(u, 10)
	for len(digits) <= exp {
		digits = "0" + digits
	}
	return sign + digits[:len(digits)-exp] + "." + digits[len(digits)-exp:]
}
