package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/guard"
)

// Service serves /v1/notifications/... . Every endpoint takes the tenant as a query parameter,
// which the guard authorizes on: a saas_admin manages its own tenants' rules and deliveries,
// a platform_admin everyone's (policies/authz.rego, notifications.read and .write).
type Service struct {
	Store      *Store
	Usage      Usage
	Dispatcher *Dispatcher
	Evaluator  *Evaluator
	Now        func() time.Time
}

// Routes are the notification endpoints.
func (s *Service) Routes() []route.Route {
	const read, write = route.ActionNotificationsRead, route.ActionNotificationsWrite
	return []route.Route{
		{Method: "GET", Pattern: "/v1/notifications/rules", Action: read, Audit: true, Handler: s.listRules},
		{Method: "POST", Pattern: "/v1/notifications/rules", Action: write, Audit: true, Handler: s.createRule},
		{Method: "GET", Pattern: "/v1/notifications/rules/{id}", Action: read, Audit: true, Handler: s.getRule},
		{Method: "PUT", Pattern: "/v1/notifications/rules/{id}", Action: write, Audit: true, Handler: s.updateRule},
		{Method: "DELETE", Pattern: "/v1/notifications/rules/{id}", Action: write, Audit: true, Handler: s.deleteRule},
		{Method: "GET", Pattern: "/v1/notifications/rules/{id}/versions", Action: read, Audit: true, Handler: s.versions},
		{Method: "GET", Pattern: "/v1/notifications/deliveries", Action: read, Audit: true, Handler: s.listDeliveries},
		{Method: "GET", Pattern: "/v1/notifications/deliveries/{id}", Action: read, Audit: true, Handler: s.getDelivery},
		{Method: "POST", Pattern: "/v1/notifications/deliveries/{id}/replay", Action: write, Audit: true, Handler: s.replay},
		// Acknowledging an event stops its escalation tiers not yet due.
		{Method: "POST", Pattern: "/v1/notifications/events/{id}/ack", Action: write, Audit: true, Handler: s.ack},
	}
}

// RuleInput is the body of a rule created or replaced over the API; id, version and secrets
// are the server's.
type RuleInput struct {
	Meter      string            `json:"meter"`
	Name       string            `json:"name,omitempty"`
	Condition  Condition         `json:"condition"`
	Channels   []ChannelInput    `json:"channels"`
	Escalation []EscalationInput `json:"escalation"`
	Disabled   bool              `json:"disabled,omitempty"`
}

// EscalationInput is a tier of a RuleInput: its channels, told After the event unless it was
// acknowledged first.
type EscalationInput struct {
	After    string         `json:"after"`
	Channels []ChannelInput `json:"channels"`
}

// ChannelInput is one channel of a RuleInput: a webhook URL or e-mail addresses.
type ChannelInput struct {
	Type string   `json:"type"`
	URL  string   `json:"url,omitempty"`
	To   []string `json:"to,omitempty"`
}

func channelsOf(in []ChannelInput) []Channel {
	out := make([]Channel, 0, len(in))
	for _, c := range in {
		out = append(out, Channel{Type: c.Type, URL: c.URL, To: c.To})
	}
	return out
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		problem.Error(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrInvalid):
		problem.Error(w, http.StatusBadRequest, err.Error())
	default:
		problem.Error(w, http.StatusInternalServerError, err.Error())
	}
}

// tenant is the request's tenant, required unless all is allowed (a global role's listing).
func tenant(w http.ResponseWriter, r *http.Request, all bool) (string, bool) {
	t := route.Tenant(r)
	if t == "" && !all {
		problem.Error(w, http.StatusBadRequest, "tenant: the tenant query parameter is required")
		return "", false
	}
	return t, true
}

func (s *Service) decodeRule(w http.ResponseWriter, r *http.Request, tenant string) (Rule, bool) {
	var in RuleInput
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		problem.Error(w, http.StatusBadRequest, fmt.Sprintf("rule: %v", err))
		return Rule{}, false
	}
	rule := Rule{Tenant: tenant, Meter: in.Meter, Name: in.Name, Condition: in.Condition, Disabled: in.Disabled}
	rule.Channels = channelsOf(in.Channels)
	for _, t := range in.Escalation {
		rule.Escalation = append(rule.Escalation, Tier{After: t.After, Channels: channelsOf(t.Channels)})
	}
	if err := rule.Validate(func(m string) bool { _, ok := s.Usage.Meter(m); return ok }); err != nil {
		writeErr(w, err)
		return Rule{}, false
	}
	if p, ok := guard.PrincipalFrom(r.Context()); ok {
		rule.UpdatedBy = p.Subject
	}
	return rule, true
}

// stored answers a rule just written: with the webhook secrets of channels that got a new one
// (shown this once), the others redacted.
func stored(prev, r Rule) Rule {
	out := r.clone()
	out.eachChannel(func(tier, i int, c *Channel) {
		if p, ok := prev.channelAt(tier, i); ok && p.Secret == c.Secret {
			c.Secret = ""
		}
	})
	return out
}

func (s *Service) createRule(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant(w, r, false)
	if !ok {
		return
	}
	rule, ok := s.decodeRule(w, r, t)
	if !ok {
		return
	}
	saved, err := s.Store.PutRule(rule, s.now())
	if err != nil {
		writeErr(w, err)
		return
	}
	s.evaluateSoon()
	writeJSON(w, http.StatusCreated, stored(Rule{}, saved))
}

func (s *Service) updateRule(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant(w, r, false)
	if !ok {
		return
	}
	prev, err := s.Store.Rule(t, r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	rule, ok := s.decodeRule(w, r, t)
	if !ok {
		return
	}
	rule.ID = prev.ID
	saved, err := s.Store.PutRule(rule, s.now())
	if err != nil {
		writeErr(w, err)
		return
	}
	s.evaluateSoon()
	writeJSON(w, http.StatusOK, stored(prev, saved))
}

func (s *Service) evaluateSoon() {
	if s.Evaluator != nil {
		s.Evaluator.Poke()
	}
}

func (s *Service) deleteRule(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant(w, r, false)
	if !ok {
		return
	}
	by := ""
	if p, ok := guard.PrincipalFrom(r.Context()); ok {
		by = p.Subject
	}
	if err := s.Store.DeleteRule(t, r.PathValue("id"), by, s.now()); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) getRule(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant(w, r, false)
	if !ok {
		return
	}
	rule, err := s.Store.Rule(t, r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rule.Redacted())
}

func (s *Service) versions(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant(w, r, false)
	if !ok {
		return
	}
	vs, err := s.Store.Versions(r.Context(), t, r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	for i := range vs {
		vs[i] = vs[i].Redacted()
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": vs})
}

func (s *Service) listRules(w http.ResponseWriter, r *http.Request) {
	t, _ := tenant(w, r, true)
	rules, err := s.Store.Rules(r.Context(), t)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]Rule, len(rules))
	for i, rule := range rules {
		out[i] = rule.Redacted()
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": out})
}

func (s *Service) listDeliveries(w http.ResponseWriter, r *http.Request) {
	t, _ := tenant(w, r, true)
	state := r.URL.Query().Get("state")
	switch state {
	case "", StatePending, StateDelivered, StateDead, StateCancelled:
	default:
		problem.Error(w, http.StatusBadRequest, "state: want pending, delivered, dead or cancelled")
		return
	}
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			problem.Error(w, http.StatusBadRequest, "limit: want 1..10000")
			return
		}
		limit = n
	}
	ds, err := s.Store.Deliveries(r.Context(), t, state, limit)
	if err != nil {
		writeErr(w, err)
		return
	}
	if ds == nil {
		ds = []Delivery{} // an empty list, not null
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": ds})
}

func (s *Service) getDelivery(w http.ResponseWriter, r *http.Request) {
	t, _ := tenant(w, r, true)
	d, err := s.Store.Delivery(r.PathValue("id"))
	if err == nil && t != "" && d.Tenant != t {
		err = ErrNotFound // a tenant-scoped caller cannot read others' deliveries by id
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	ev, err := s.Store.Event(d.EventID)
	if err != nil {
		writeErr(w, err)
		return
	}
	attempts, err := s.Store.Attempts(r.Context(), d.ID)
	if err != nil {
		writeErr(w, err)
		return
	}
	if attempts == nil {
		attempts = []Attempt{}
	}
	out := map[string]any{"delivery": d, "event": ev, "attempts": attempts}
	if ack, ok, err := s.Store.Acknowledged(ev.ID); err != nil {
		writeErr(w, err)
		return
	} else if ok {
		out["ack"] = ack
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) replay(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant(w, r, false)
	if !ok {
		return
	}
	d, err := s.Store.Replay(t, r.PathValue("id"), s.now())
	if err != nil {
		writeErr(w, err)
		return
	}
	if s.Dispatcher != nil {
		s.Dispatcher.Wake()
	}
	writeJSON(w, http.StatusAccepted, d)
}

func (s *Service) ack(w http.ResponseWriter, r *http.Request) {
	t, ok := tenant(w, r, false)
	if !ok {
		return
	}
	by := ""
	if p, ok := guard.PrincipalFrom(r.Context()); ok {
		by = p.Subject
	}
	a, err := s.Store.Acknowledge(t, r.PathValue("id"), by, s.now())
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}
