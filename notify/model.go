// Package notify tells tenants' admins when a condition on their usage becomes true: rules
// (scope, condition, channels) managed over the API, an outbox of events written durably in the
// ledger's Pebble store once per rule and period, and a dispatcher that delivers each event to
// each channel (Standard Webhooks, SMTP e-mail) with retries, backoff and a dead-letter state.
//
// See docs/notifications.md.
package notify

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"time"
)

// Condition kinds.
const (
	// CondQuotaPercent: usage in the period reached Percent % of the quota limit in force.
	CondQuotaPercent = "quota_percent"
	// CondUsageAmount: usage in the period reached Amount (the meter's unit).
	CondUsageAmount = "usage_amount"
	// CondInvoiceFinalized: an invoice of the tenant was finalized (once per invoice, for
	// invoices finalized after the rule was created).
	CondInvoiceFinalized = "invoice_finalized"
	// CondScheduleSummary: the tenant's executive summary, on a cron schedule in a time zone.
	CondScheduleSummary = "schedule_summary"
)

// Channel kinds.
const (
	ChannelWebhook = "webhook"
	ChannelEmail   = "email"
)

// Delivery states.
const (
	StatePending   = "pending"
	StateDelivered = "delivered"
	StateDead      = "dead"
	// StateCancelled: an escalation tier's delivery not sent because the event was acknowledged
	// before the tier was due.
	StateCancelled = "cancelled"
)

// ErrInvalid marks a rule the API refuses; ErrNotFound a rule or delivery that is not there.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
)

// Condition is what must become true for a rule to fire.
type Condition struct {
	Kind    string `json:"kind"`
	Percent int64  `json:"percent,omitempty"` // quota_percent: 1..1000
	Amount  int64  `json:"amount,omitempty"`  // usage_amount: > 0
	// schedule_summary: a five-field cron expression and an IANA time zone (default UTC).
	Cron     string `json:"cron,omitempty"`
	Timezone string `json:"timezone,omitempty"`
}

// location is the schedule's time zone.
func (c Condition) location() (*time.Location, error) {
	if c.Timezone == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(c.Timezone)
}

// Channel is where a rule's events go.
type Channel struct {
	Type string   `json:"type"`
	URL  string   `json:"url,omitempty"` // webhook
	To   []string `json:"to,omitempty"`  // email
	// Secret signs the webhook; generated at creation and shown once (in the creation's answer).
	Secret string `json:"secret,omitempty"`
}

// Rule is a notification rule. Rules are versioned: every change stores a new version, and the
// audit trail records who made it.
type Rule struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Meter     string    `json:"meter,omitempty"`
	Name      string    `json:"name,omitempty"`
	Condition Condition `json:"condition"`
	Channels  []Channel `json:"channels"`
	// Escalation tiers: each tier's channels are notified After the event unless it has been
	// acknowledged by then (team at once, on-call after 15m, manager after 1h).
	Escalation []Tier    `json:"escalation,omitempty"`
	Disabled   bool      `json:"disabled,omitempty"`
	Version    int64     `json:"version"`
	Created    time.Time `json:"created"`
	Deleted    bool      `json:"deleted,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
	UpdatedBy  string    `json:"updated_by,omitempty"`
}

// Tier is an escalation tier.
type Tier struct {
	After    string    `json:"after"` // Go duration, e.g. 15m
	Channels []Channel `json:"channels"`
}

// Target is one channel of a rule with its tier: deliveries address channels by their position
// in the rule's flattened list (the first tier's channels, then each escalation tier's).
type Target struct {
	Channel Channel
	Tier    int           // 0: the rule's channels
	After   time.Duration // when the tier is due after the event
}

// Targets flattens the rule's channels and escalation tiers.
func (r Rule) Targets() []Target {
	out := make([]Target, 0, len(r.Channels))
	for _, c := range r.Channels {
		out = append(out, Target{Channel: c})
	}
	for i, t := range r.Escalation {
		after, _ := time.ParseDuration(t.After) // validated
		for _, c := range t.Channels {
			out = append(out, Target{Channel: c, Tier: i + 1, After: after})
		}
	}
	return out
}

// eachChannel calls fn with a pointer to every channel of the rule, tier by tier.
func (r *Rule) eachChannel(fn func(tier, i int, c *Channel)) {
	for i := range r.Channels {
		fn(0, i, &r.Channels[i])
	}
	for t := range r.Escalation {
		for i := range r.Escalation[t].Channels {
			fn(t+1, i, &r.Escalation[t].Channels[i])
		}
	}
}

// channelAt is the channel at a tier and position, if the rule has one.
func (r *Rule) channelAt(tier, i int) (Channel, bool) {
	chans := r.Channels
	if tier > 0 {
		if tier > len(r.Escalation) {
			return Channel{}, false
		}
		chans = r.Escalation[tier-1].Channels
	}
	if i >= len(chans) {
		return Channel{}, false
	}
	return chans[i], true
}

// clone copies the rule's channel slices, so that editing its channels leaves r alone.
func (r Rule) clone() Rule {
	out := r
	out.Channels = slices.Clone(r.Channels)
	out.Escalation = slices.Clone(r.Escalation)
	for i := range out.Escalation {
		out.Escalation[i].Channels = slices.Clone(r.Escalation[i].Channels)
	}
	return out
}

// Redacted is the rule as read back: webhook secrets are never shown again.
func (r Rule) Redacted() Rule {
	out := r.clone()
	out.eachChannel(func(_, _ int, c *Channel) { c.Secret = "" })
	return out
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Validate checks a rule as the API receives it.
func (r *Rule) Validate(meterExists func(string) bool) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if !idPattern.MatchString(r.Tenant) {
		return bad("tenant: want 1-128 of [A-Za-z0-9_.-]")
	}
	tenantWide := r.Condition.Kind == CondInvoiceFinalized || r.Condition.Kind == CondScheduleSummary
	if tenantWide {
		if r.Meter != "" || r.Condition.Percent != 0 || r.Condition.Amount != 0 {
			return bad("%s takes no meter, percent nor amount", r.Condition.Kind)
		}
	} else if r.Meter == "" || !meterExists(r.Meter) {
		return bad("meter %q: not a configured meter", r.Meter)
	}
	if r.Condition.Kind != CondScheduleSummary && (r.Condition.Cron != "" || r.Condition.Timezone != "") {
		return bad("condition.cron and condition.timezone: only for %s", CondScheduleSummary)
	}
	switch r.Condition.Kind {
	case CondScheduleSummary:
		if _, err := ParseCron(r.Condition.Cron); err != nil {
			return bad("condition.cron: %v", err)
		}
		if _, err := r.Condition.location(); err != nil {
			return bad("condition.timezone %q: not an IANA time zone", r.Condition.Timezone)
		}
	case CondInvoiceFinalized:
	case CondQuotaPercent:
		if r.Condition.Percent < 1 || r.Condition.Percent > 1000 {
			return bad("condition.percent: want 1..1000")
		}
		if r.Condition.Amount != 0 {
			return bad("condition.amount: not used by quota_percent")
		}
	case CondUsageAmount:
		if r.Condition.Amount <= 0 {
			return bad("condition.amount: want > 0")
		}
		if r.Condition.Percent != 0 {
			return bad("condition.percent: not used by usage_amount")
		}
	default:
		return bad("condition.kind %q: want %s, %s, %s or %s", r.Condition.Kind, CondQuotaPercent, CondUsageAmount, CondInvoiceFinalized, CondScheduleSummary)
	}
	if err := validateChannels("channels", r.Channels); err != nil {
		return err
	}
	if len(r.Escalation) > 5 {
		return bad("escalation: at most 5 tiers")
	}
	var prev time.Duration
	for i, t := range r.Escalation {
		after, err := time.ParseDuration(t.After)
		if err != nil || after <= prev || after > 7*24*time.Hour {
			return bad("escalation[%d].after %q: want a duration after the previous tier's, at most 168h", i, t.After)
		}
		prev = after
		if err := validateChannels(fmt.Sprintf("escalation[%d].channels", i), t.Channels); err != nil {
			return err
		}
	}
	if len(r.Name) > 200 {
		return bad("name: at most 200 characters")
	}
	return nil
}

// Event is one firing of a rule: written to the outbox once per rule and period.
type Event struct {
	ID      string `json:"id"`
	Type    string `json:"type"` // e.g. quota.percent_reached
	RuleID  string `json:"rule_id"`
	Version int64  `json:"rule_version"`
	Tenant  string `json:"tenant"`
	Meter   string `json:"meter,omitempty"`
	Unit    string `json:"unit,omitempty"`
	// Period is the once-key of the event beside the rule: the month (YYYY-MM) for usage
	// conditions, the invoice number for invoice_finalized.
	Period    string       `json:"period"`
	Condition Condition    `json:"condition"`
	Used      int64        `json:"used"`
	Limit     int64        `json:"limit,omitempty"`
	Invoice   *InvoiceInfo `json:"invoice,omitempty"`
	Summary   *Summary     `json:"summary,omitempty"`
	At        time.Time    `json:"at"`
}

// InvoiceInfo is what an invoice_finalized event says of the invoice.
type InvoiceInfo struct {
	Number      string    `json:"number"`
	Period      string    `json:"period"` // billing period, e.g. 2026-11
	Currency    string    `json:"currency"`
	Exponent    int       `json:"exponent"`   // minor-unit digits of the currency
	AmountDue   int64     `json:"amount_due"` // minor units
	FinalizedAt time.Time `json:"finalized_at"`
	DueAt       time.Time `json:"due_at,omitzero"`
}

// Delivery is one event to one channel of its rule.
type Delivery struct {
	ID       string    `json:"id"` // the idempotency key: webhook-id, e-mail Message-ID
	EventID  string    `json:"event_id"`
	RuleID   string    `json:"rule_id"`
	Tenant   string    `json:"tenant"`
	Channel  int       `json:"channel"` // position in the rule version's Targets
	Tier     int       `json:"tier,omitempty"`
	Type     string    `json:"type"` // channel type
	State    string    `json:"state"`
	Attempts int       `json:"attempts"`
	Created  time.Time `json:"created"`
	// Since is when the current run of attempts began (creation, or the last replay): the
	// dead-letter clock.
	Since     time.Time `json:"since"`
	NextAt    time.Time `json:"next_at,omitzero"`
	Delivered time.Time `json:"delivered,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Replays   int       `json:"replays,omitempty"`
}

// Attempt is one try of a delivery, kept in the delivery log.
type Attempt struct {
	N      int       `json:"n"`
	At     time.Time `json:"at"`
	OK     bool      `json:"ok"`
	Status int       `json:"status,omitempty"` // HTTP status for webhooks
	Error  string    `json:"error,omitempty"`
}

func validateChannels(field string, chans []Channel) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if len(chans) == 0 || len(chans) > 10 {
		return bad("%s: want 1..10", field)
	}
	for i, c := range chans {
		switch c.Type {
		case ChannelWebhook:
			u, err := url.Parse(c.URL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return bad("%s[%d].url: want an http(s) URL", field, i)
			}
			if len(c.To) > 0 {
				return bad("%s[%d].to: not used by a webhook", field, i)
			}
		case ChannelEmail:
			if len(c.To) == 0 || len(c.To) > 20 {
				return bad("%s[%d].to: want 1..20 addresses", field, i)
			}
			for _, a := range c.To {
				if p, err := mail.ParseAddress(a); err != nil || p.Address != a {
					return bad("%s[%d].to: %q is not a bare e-mail address", field, i, a)
				}
			}
			if c.URL != "" {
				return bad("%s[%d].url: not used by e-mail", field, i)
			}
		default:
			return bad("%s[%d].type %q: want webhook or email", field, i, c.Type)
		}
	}
	return nil
}

// Summary is a tenant's executive summary as a scheduled event carries it (analytics' executive
// report: headline figures over the last 30 days against the 30 before, and the insights).
type Summary struct {
	From           time.Time    `json:"from"`
	To             time.Time    `json:"to"`
	KPIs           []SummaryKPI `json:"kpis"`
	InsightCount   int          `json:"insight_count"`
	InsightSavings int64        `json:"insight_savings"` // minor units of InsightCurrency
	Currency       string       `json:"insight_currency,omitempty"`
	Exponent       int          `json:"insight_currency_exponent,omitempty"` // minor-unit digits
	Notes          []string     `json:"notes,omitempty"`
}

// SummaryKPI is one headline figure.
type SummaryKPI struct {
	Name     string   `json:"name"`
	Meter    string   `json:"meter,omitempty"`
	Unit     string   `json:"unit,omitempty"`
	Value    int64    `json:"value"`
	Previous int64    `json:"previous"`
	Percent  *float64 `json:"percent,omitempty"`
}
