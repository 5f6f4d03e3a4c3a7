package notify

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Team at once, on-call after 15 min, manager after an hour: each tier is sent when due unless
// the event was acknowledged before, and a tier cancelled by the acknowledgement is never sent.
func TestEscalationStopsAtAcknowledgement(t *testing.T) {
	ctx := ctxT(t)
	ns := NewStore(openDB(t, t.TempDir()))
	team, oncall, manager := newReceiver(t), newReceiver(t), newReceiver(t)
	for _, r := range []*receiver{team, oncall, manager} {
		r.tolerance = 3 * time.Hour // the dispatcher's clock runs ahead
	}
	clock := time.Now().UTC().Truncate(time.Second)
	rule := Rule{Tenant: "acme", Meter: "ai_tokens", Condition: Condition{Kind: CondUsageAmount, Amount: 1},
		Channels: []Channel{{Type: ChannelWebhook, URL: team.URL}},
		Escalation: []Tier{
			{After: "15m", Channels: []Channel{{Type: ChannelWebhook, URL: oncall.URL}}},
			{After: "1h", Channels: []Channel{{Type: ChannelWebhook, URL: manager.URL}}},
		}}
	if err := rule.Validate(func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	r, err := ns.PutRule(rule, clock)
	if err != nil {
		t.Fatal(err)
	}
	team.Trust(r.Channels[0].Secret)
	oncall.Trust(r.Escalation[0].Channels[0].Secret)
	manager.Trust(r.Escalation[1].Channels[0].Secret)
	if r.Escalation[0].Channels[0].Secret == r.Channels[0].Secret {
		t.Fatal("tiers share a secret")
	}
	d := NewDispatcher(ns, nil, testLog(t))
	d.Now = func() time.Time { return clock }
	drain := func() {
		t.Helper()
		if _, err := d.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fire := func(period string) string {
		t.Helper()
		if _, err := ns.Fire(r, Event{Type: "usage.amount_reached", RuleID: r.ID, Version: r.Version, Tenant: "acme", Meter: "ai_tokens", Period: period, At: clock}, clock); err != nil {
			t.Fatal(err)
		}
		return eventID(r.ID, period)
	}

	// Nobody acknowledges the first event: every tier is sent, each when due.
	fire("2026-11")
	drain()
	if len(team.Received()) != 1 || len(oncall.Received()) != 0 {
		t.Fatalf("at once: team %d, on-call %d", len(team.Received()), len(oncall.Received()))
	}
	clock = clock.Add(15 * time.Minute)
	drain()
	if len(oncall.Received()) != 1 || len(manager.Received()) != 0 || oncall.Received()[0].Body["escalation_tier"] != 1.0 {
		t.Fatalf("after 15 min: on-call %v, manager %d", oncall.Received(), len(manager.Received()))
	}
	clock = clock.Add(45 * time.Minute)
	drain()
	if len(manager.Received()) != 1 {
		t.Fatalf("after 1 h: manager %d", len(manager.Received()))
	}

	// The second is acknowledged after the on-call tier: the manager is never paged.
	ev := fire("2026-12")
	drain()
	clock = clock.Add(15 * time.Minute)
	drain()
	if len(oncall.Received()) != 2 {
		t.Fatalf("on-call %d, want 2", len(oncall.Received()))
	}
	if _, err := ns.Acknowledge("globex", ev, "bob", clock); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant acknowledged: %v", err)
	}
	a, err := ns.Acknowledge("acme", ev, "alice", clock)
	if err != nil || a.By != "alice" {
		t.Fatalf("ack %+v %v", a, err)
	}
	if again, _ := ns.Acknowledge("acme", ev, "carol", clock.Add(time.Minute)); again != a {
		t.Fatalf("a second ack replaced the first: %+v", again)
	}
	clock = clock.Add(time.Hour)
	drain()
	if len(manager.Received()) != 1 {
		t.Fatalf("the manager was paged after the acknowledgement: %d", len(manager.Received()))
	}
	cancelled, err := ns.Deliveries(ctx, "acme", StateCancelled, 0)
	if err != nil || len(cancelled) != 1 || cancelled[0].Tier != 2 || !strings.Contains(cancelled[0].LastError, "acknowledged by alice") {
		t.Fatalf("cancelled %+v %v", cancelled, err)
	}
	if n, _ := ns.Pending(ctx); n != 0 {
		t.Fatalf("%d still pending", n)
	}
}

func TestEscalationValidation(t *testing.T) {
	base := Rule{Tenant: "acme", Meter: "m", Condition: Condition{Kind: CondUsageAmount, Amount: 1},
		Channels: []Channel{{Type: ChannelEmail, To: []string{"a@b.test"}}}}
	for name, tiers := range map[string][]Tier{
		"not a duration": {{After: "soon", Channels: base.Channels}},
		"not increasing": {{After: "1h", Channels: base.Channels}, {After: "15m", Channels: base.Channels}},
		"no channel":     {{After: "15m"}},
		"bad channel":    {{After: "15m", Channels: []Channel{{Type: ChannelWebhook, URL: "nope"}}}},
		"past a week":    {{After: "200h", Channels: base.Channels}},
		"zero":           {{After: "0s", Channels: base.Channels}},
	} {
		r := base
		r.Escalation = tiers
		if err := r.Validate(func(string) bool { return true }); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
