package report

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/event"
)

// Held is the data the ledger holds about one tenant.
type Held struct {
	Tenant        string    `json:"tenant"`
	RawEvents     int64     `json:"raw_events"`
	FirstEvent    time.Time `json:"first_event"`
	LastEvent     time.Time `json:"last_event"`
	Users         int       `json:"users"` // distinct users named by its events
	Documents     int64     `json:"documents"`
	DocumentBytes int64     `json:"document_bytes"`
	StorageBytes  int64     `json:"storage_bytes"`
}

// AuditSummary is the access audit of the period.
type AuditSummary struct {
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`
	// Verified is true when the whole hash chain verified; Head is its last hash.
	Verified    bool   `json:"verified"`
	VerifyError string `json:"verify_error,omitempty"`
	ChainLength uint64 `json:"chain_length"`
	Head        string `json:"head,omitempty"`
	// Entries of the period (and tenant, when the report has one).
	Entries  int            `json:"entries"`
	Denied   int            `json:"denied"`
	ByAction map[string]int `json:"by_action"`
	Subjects int            `json:"subjects"`
	// Listed are the entries of the period, oldest first (at most MaxAuditEntries).
	Listed    []audit.Entry `json:"listed"`
	Truncated bool          `json:"truncated"`
}

// MaxAuditEntries bounds the entries listed in a compliance report.
const MaxAuditEntries = 10000

// Compliance is the compliance report's content.
type Compliance struct {
	GeneratedAt time.Time `json:"generated_at"`
	Tenant      string    `json:"tenant,omitempty"` // "" = all tenants
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Held        []Held    `json:"held"`
	// Retention lists the configured retention settings as path = value; RetentionNote says
	// what happens without them.
	Retention     [][2]string  `json:"retention"`
	RetentionNote string       `json:"retention_note,omitempty"`
	Audit         AuditSummary `json:"audit"`
}

// Scope is what a compliance report may show its reader.
type Scope int

const (
	// ScopeFull is the operator's report (platform admins, usagectl): every setting with its
	// value, the whole chain's length and head, every entry of the period and its subject.
	ScopeFull Scope = iota
	// ScopeTenant is a customer's report: only what concerns the report's tenant (or, for a
	// report over all tenants, entries about some tenant, never the server's own). Retention
	// periods are shown, but not where archives are written or how their key is held (server
	// paths, key files and variables: "withheld"); the chain's verdict, not its length or
	// head (they measure every tenant's activity); and the subjects of entries refused on the
	// tenant are withheld: those are principals the tenant does not have (other tenants'
	// people, failed logins), whose names are not the tenant's to see. The subjects of allowed
	// entries are the principals who read the tenant's data, which the tenant is entitled to know.
	ScopeTenant
)

// WithheldSubject replaces the subject of an entry refused on the tenant in a ScopeTenant report.
const WithheldSubject = "(withheld: refused principal)"

// tenantRetention are the retention settings a tenant's report shows with their value: the
// periods its data is kept and how often retention runs. Any other setting (archive_dir,
// key_file, key_env, and settings added later) is shown as "withheld".
var tenantRetention = map[string]bool{"retention.raw_events": true, "retention.rollups": true,
	"retention.invoices": true, "retention.audit": true, "retention.interval": true}

// ComplianceReport reads the data held (all time, up to now), the retention configuration and
// the audit entries of [from, to) for one tenant or all (""), as scope allows its reader to see.
func (s *Source) ComplianceReport(ctx context.Context, tenant string, from, to, now time.Time, retention *yaml.Node, log *audit.Log, scope Scope) (*Compliance, error) {
	c := &Compliance{GeneratedAt: now.UTC(), Tenant: tenant, From: from, To: to}
	held := map[string]*Held{}
	users := map[string]map[string]struct{}{}
	err := s.Store.RawEvents(ctx, time.Time{}, time.Time{}, func(ev *event.Event) error {
		if tenant != "" && ev.Tenant != tenant {
			return nil
		}
		h := held[ev.Tenant]
		if h == nil {
			h = &Held{Tenant: ev.Tenant, FirstEvent: ev.Time}
			held[ev.Tenant] = h
			users[ev.Tenant] = map[string]struct{}{}
		}
		h.RawEvents++
		h.LastEvent = ev.Time
		if u, ok := ev.Field("user"); ok && u != "" {
			users[ev.Tenant][u] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compliance report: %w", err)
	}
	for t, h := range held {
		h.Users = len(users[t])
		for _, m := range []struct {
			name string
			dst  *int64
		}{{"documents", &h.Documents}, {"document_bytes", &h.DocumentBytes}, {"storage_bytes", &h.StorageBytes}} {
			if _, ok := s.Store.Meter(m.name); !ok {
				continue
			}
			end := now.UTC().Truncate(time.Hour).Add(time.Hour)
			v, err := s.Store.Total(ctx, t, m.name, end.Add(-time.Hour), end)
			if err != nil {
				return nil, err
			}
			*m.dst = v
		}
		c.Held = append(c.Held, *h)
	}
	sort.Slice(c.Held, func(i, j int) bool { return c.Held[i].Tenant < c.Held[j].Tenant })

	if retention != nil && retention.Kind != 0 {
		flatten(retention, "retention", &c.Retention)
	}
	if scope == ScopeTenant {
		for i, kv := range c.Retention {
			if !tenantRetention[kv[0]] {
				c.Retention[i][1] = "withheld"
			}
		}
	}
	if len(c.Retention) == 0 {
		c.RetentionNote = "no retention policy is configured: raw events, rollups, invoices and the audit trail are kept indefinitely"
	}

	if log == nil {
		c.Audit.Note = "the audit log is not wired into this report"
		return c, nil
	}
	c.Audit.Available = true
	c.Audit.ByAction = map[string]int{}
	res, err := log.Verify(ctx)
	if scope == ScopeFull {
		c.Audit.ChainLength, c.Audit.Head = res.Entries, res.Head
	}
	var te *audit.TamperError
	switch {
	case err == nil:
		c.Audit.Verified = true
	case errors.As(err, &te):
		c.Audit.VerifyError = te.Error()
	default:
		return nil, fmt.Errorf("compliance report: verifying the audit chain: %w", err)
	}
	subjects := map[string]bool{}
	var after uint64
	for {
		page, err := log.List(ctx, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("compliance report: listing the audit trail: %w", err)
		}
		for _, e := range page {
			after = e.Seq
			if e.Time.Before(from) || !e.Time.Before(to) || (tenant != "" && e.Tenant != tenant) {
				continue
			}
			if scope == ScopeTenant {
				if e.Tenant == "" {
					continue // the server's own business (admin actions, probes, webhooks)
				}
				if !e.Allow {
					e.Subject, e.Reason = WithheldSubject, "refused"
				}
			}
			c.Audit.Entries++
			c.Audit.ByAction[e.Action]++
			subjects[e.Subject] = true
			if !e.Allow {
				c.Audit.Denied++
			}
			if len(c.Audit.Listed) < MaxAuditEntries {
				c.Audit.Listed = append(c.Audit.Listed, e)
			} else {
				c.Audit.Truncated = true
			}
		}
		if len(page) < 1000 {
			break
		}
	}
	c.Audit.Subjects = len(subjects)
	return c, nil
}

// flatten lists a YAML tree's scalars as path = value.
func flatten(n *yaml.Node, path string, out *[][2]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			flatten(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			flatten(n.Content[i+1], path+"."+n.Content[i].Value, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			flatten(c, fmt.Sprintf("%s[%d]", path, i), out)
		}
	case yaml.ScalarNode:
		*out = append(*out, [2]string{path, n.Value})
	case yaml.AliasNode:
		flatten(n.Alias, path, out)
	}
}

// WriteTables writes the compliance report as tables.
func (c *Compliance) WriteTables(t Tables) error {
	scope := "all tenants"
	if c.Tenant != "" {
		scope = "tenant " + c.Tenant
	}
	if err := t.Begin("Data held", []string{"tenant", "raw_events", "first_event", "last_event", "users", "documents", "document_bytes", "storage_bytes"},
		fmt.Sprintf("%s; every raw event is kept for audit and recomputation; levels as of %s", scope, c.GeneratedAt.Format(time.RFC3339))); err != nil {
		return err
	}
	for _, h := range c.Held {
		if err := t.Row(h.Tenant, h.RawEvents, h.FirstEvent, h.LastEvent, h.Users, h.Documents, h.DocumentBytes, h.StorageBytes); err != nil {
			return err
		}
	}
	var notes []string
	if c.RetentionNote != "" {
		notes = append(notes, c.RetentionNote)
	}
	if err := t.Begin("Retention", []string{"setting", "value"}, notes...); err != nil {
		return err
	}
	for _, kv := range c.Retention {
		if err := t.Row(kv[0], kv[1]); err != nil {
			return err
		}
	}
	a := c.Audit
	verdict := "not available: " + a.Note
	if a.Available {
		verdict = fmt.Sprintf("chain of %d entries verified, head %s", a.ChainLength, a.Head)
		if a.Head == "" {
			verdict = "the audit chain verified"
		}
		if !a.Verified {
			verdict = "CHAIN BROKEN: " + a.VerifyError
		}
	}
	if err := t.Begin("Audit summary", []string{"item", "value"}, verdict); err != nil {
		return err
	}
	rows := [][2]any{{"period", c.From.Format(time.RFC3339) + " to " + c.To.Format(time.RFC3339)}, {"verified", a.Verified}}
	if a.Head != "" {
		rows = append(rows, [2]any{"chain_length", int64(a.ChainLength)})
	}
	rows = append(rows, [2]any{"entries_in_period", a.Entries}, [2]any{"denied", a.Denied}, [2]any{"subjects", a.Subjects})
	actions := make([]string, 0, len(a.ByAction))
	for k := range a.ByAction {
		actions = append(actions, k)
	}
	sort.Strings(actions)
	for _, k := range actions {
		rows = append(rows, [2]any{"action " + k, a.ByAction[k]})
	}
	for _, r := range rows {
		if err := t.Row(r[0], r[1]); err != nil {
			return err
		}
	}
	note := []string{}
	if a.Truncated {
		note = append(note, fmt.Sprintf("only the first %d entries are listed", MaxAuditEntries))
	}
	if err := t.Begin("Audit entries", []string{"seq", "time", "subject", "kind", "action", "method", "path", "tenant", "allow", "status", "reason"}, note...); err != nil {
		return err
	}
	for _, e := range a.Listed {
		if err := t.Row(int64(e.Seq), e.Time, e.Subject, e.Kind, e.Action, e.Method, e.Path, e.Tenant, e.Allow, e.Status, strings.TrimSpace(e.Reason)); err != nil {
			return err
		}
	}
	return nil
}
