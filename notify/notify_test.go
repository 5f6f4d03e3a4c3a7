package notify

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"

	"github.com/usagemeter/usagemeter/notify/notifytest"
)

// The example of the Standard Webhooks specification's reference libraries.
func TestSignStandardWebhooksVector(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	got, err := Sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

func TestVerifyRejects(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q", secret)
	}
	now := time.Now()
	body := []byte(`{"a":1}`)
	sig, _ := Sign(secret, "d1", now, body)
	h := http.Header{}
	h.Set("webhook-id", "d1")
	h.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	h.Set("webhook-signature", "v1,bogus "+sig)
	if err := Verify(secret, h, body, now, time.Minute); err != nil {
		t.Fatalf("a good signature among several: %v", err)
	}
	other, _ := NewSecret()
	for name, check := range map[string]func() error{
		"tampered body": func() error { return Verify(secret, h, []byte(`{"a":2}`), now, time.Minute) },
		"other secret":  func() error { return Verify(other, h, body, now, time.Minute) },
		"too old":       func() error { return Verify(secret, h, body, now.Add(10*time.Minute), time.Minute) },
		"other id": func() error {
			h2 := h.Clone()
			h2.Set("webhook-id", "d2")
			return Verify(secret, h2, body, now, time.Minute)
		},
	} {
		if err := check(); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want ErrSignature", name, err)
		}
	}
}

func TestReachedIsExact(t *testing.T) {
	for _, c := range []struct {
		used, limit, pct int64
		want             bool
	}{
		{79, 100, 80, false}, {80, 100, 80, true}, {81, 100, 80, true},
		{799999999, 1000000000, 80, false}, {800000000, 1000000000, 80, true},
		{math.MaxInt64 / 100 * 80, math.MaxInt64 / 100 * 100, 80, true}, // products past int64
		{math.MaxInt64/100*80 - 1, math.MaxInt64 / 100 * 100, 80, false},
		{0, 100, 1, false}, {5, 0, 80, false}, {-5, 100, 80, false},
	} {
		if got := reached(c.used, c.limit, c.pct); got != c.want {
			t.Errorf("reached(%d, %d, %d%%) = %v", c.used, c.limit, c.pct, got)
		}
	}
}

func TestRuleValidation(t *testing.T) {
	meters := func(m string) bool { return m == "ai_tokens" }
	good := Rule{Tenant: "acme", Meter: "ai_tokens", Condition: Condition{Kind: CondQuotaPercent, Percent: 80},
		Channels: []Channel{{Type: ChannelWebhook, URL: "https://hooks.example.com/x"}, {Type: ChannelEmail, To: []string{"ops@acme.test"}}}}
	if err := good.Validate(meters); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Rule){
		"unknown meter":        func(r *Rule) { r.Meter = "nope" },
		"bad tenant":           func(r *Rule) { r.Tenant = "a\x00b" },
		"percent zero":         func(r *Rule) { r.Condition.Percent = 0 },
		"unknown kind":         func(r *Rule) { r.Condition.Kind = "forecast" },
		"amount missing":       func(r *Rule) { r.Condition = Condition{Kind: CondUsageAmount} },
		"no channel":           func(r *Rule) { r.Channels = nil },
		"ftp webhook":          func(r *Rule) { r.Channels[0].URL = "ftp://x/y" },
		"header injection":     func(r *Rule) { r.Channels[1].To = []string{"a@b.test\r\nBcc: x@y.test"} },
		"named address":        func(r *Rule) { r.Channels[1].To = []string{"Ops <ops@acme.test>"} },
		"unknown channel":      func(r *Rule) { r.Channels[0].Type = "sms" },
		"invoice with a meter": func(r *Rule) { r.Condition = Condition{Kind: CondInvoiceFinalized} },
	} {
		r := good
		r.Channels = append([]Channel(nil), good.Channels...)
		r.Channels[1].To = append([]string(nil), good.Channels[1].To...)
		mod(&r)
		if err := r.Validate(meters); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// commitTokens commits one ai.tokens event of n input tokens for a tenant, now.
func commitTokens(t *testing.T, st *ledger.Store, id, tenant string, n int) {
	t.Helper()
	body := fmt.Sprintf(`[{"specversion":"1.0","id":%q,"source":"test","type":"ai.tokens","time":%q,"data":{"tenant":%q,"user":"u1","feature":"chat","model":"m","input_tokens":%d,"output_tokens":0}}]`,
		id, time.Now().UTC().Format(time.RFC3339Nano), tenant, n)
	dec := &event.Decoder{MaxEvents: 10}
	evs, err := dec.Decode("application/json", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// From events committed to a real ledger to a verified webhook and an e-mail read back from
// mailpit: each rule fires once in the period however often its condition is seen true, and
// evaluating again after a restart (a new evaluator over the same store) writes nothing more.
func TestCrossingDeliveredOnceByWebhookAndEmail(t *testing.T) {
	ctx := ctxT(t)
	mp := notifytest.StartMailpit(t, "--smtp-auth-accept-any", "--smtp-auth-allow-insecure")
	rcv := newReceiver(t)
	st, err := ledger.Open(ctx, ledger.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ns := NewStore(st.DB())
	limits := func(_ context.Context, tenant, m string) (int64, bool) {
		if tenant == "acme" && m == "ai_tokens" {
			return 1000, true
		}
		return 0, false
	}
	webhookRule, err := ns.PutRule(Rule{Tenant: "acme", Meter: "ai_tokens", Condition: Condition{Kind: CondQuotaPercent, Percent: 80},
		Channels: []Channel{{Type: ChannelWebhook, URL: rcv.URL + "/hook"}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rcv.Trust(webhookRule.Channels[0].Secret)
	mailRule, err := ns.PutRule(Rule{Tenant: "acme", Meter: "ai_tokens", Condition: Condition{Kind: CondUsageAmount, Amount: 900},
		Channels: []Channel{{Type: ChannelEmail, To: []string{"admin@acme.test", "finance@acme.test"}}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Another tenant's usage never fires acme's rules.
	commitTokens(t, st, "other-1", "globex", 5000)

	smtpCfg := &SMTP{Addr: mp.SMTP, From: "usagemeter@platform.test"}
	if err := smtpCfg.load(); err != nil {
		t.Fatal(err)
	}
	ev := NewEvaluator(ns, st, limits, testLog(t))
	d := NewDispatcher(ns, smtpCfg, testLog(t))
	evaluate := func(want int) {
		t.Helper()
		n, err := ev.Evaluate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("evaluation wrote %d events, want %d", n, want)
		}
		if _, err := d.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	commitTokens(t, st, "a-1", "acme", 799)
	evaluate(0)
	commitTokens(t, st, "a-2", "acme", 1) // exactly 80 %
	evaluate(1)
	commitTokens(t, st, "a-3", "acme", 50)
	evaluate(0)                             // still above 80 %: once per period
	commitTokens(t, st, "a-4", "acme", 100) // 950: the amount rule fires
	evaluate(1)
	evaluate(0)
	if n, err := NewEvaluator(ns, st, limits, testLog(t)).Evaluate(ctx); err != nil || n != 0 {
		t.Fatalf("a fresh evaluator wrote %d events (%v), want 0", n, err)
	}

	got := rcv.Received()
	if len(got) != 1 || rcv.Rejected() != 0 {
		t.Fatalf("webhook got %d verified and %d rejected requests, want 1 and 0", len(got), rcv.Rejected())
	}
	data := got[0].Body["data"].(map[string]any)
	if got[0].Body["type"] != "quota.percent_reached" || data["tenant"] != "acme" || data["used"] != 800.0 || data["limit"] != 1000.0 ||
		data["rule_id"] != webhookRule.ID || data["period"] != time.Now().UTC().Format("2006-01") {
		t.Fatalf("webhook payload %v", got[0].Body)
	}
	msgs := mp.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("mailpit holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if len(m.To) != 2 || m.To[0].Address != "admin@acme.test" || !strings.Contains(m.Subject, "ai_tokens reached 950") {
		t.Fatalf("message to %v, subject %q", m.To, m.Subject)
	}
	if !strings.Contains(m.Text, "Threshold:") || !strings.Contains(m.Text, "900") || !strings.Contains(m.HTML, "<th align=\"left\">Used</th><td>950") {
		t.Fatalf("bodies:\n%s\n%s", m.Text, m.HTML)
	}
	mailDeliveries, err := ns.Deliveries(ctx, "acme", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, del := range mailDeliveries {
		if del.State != StateDelivered || del.Attempts != 1 {
			t.Errorf("delivery %+v, want delivered at the first attempt", del)
		}
		if del.RuleID == mailRule.ID && !strings.HasPrefix(m.MessageID, del.ID+"@") {
			t.Errorf("Message-ID %q, want the delivery key %s", m.MessageID, del.ID)
		}
		if del.RuleID == webhookRule.ID && got[0].ID != del.ID {
			t.Errorf("webhook-id %q, want the delivery key %s", got[0].ID, del.ID)
		}
	}
	if len(mailDeliveries) != 2 {
		t.Fatalf("%d deliveries, want 2", len(mailDeliveries))
	}
}

// A delivery failing is retried with exponential backoff, logged attempt by attempt, dead-
// lettered once it has failed for GiveUp, and delivered by hand by a replay with the same key.
func TestRetryBackoffDeadLetterReplay(t *testing.T) {
	ctx := ctxT(t)
	ns := NewStore(openDB(t, t.TempDir()))
	rcv := newReceiver(t)
	rcv.SetStatus(func(int, string) int { return http.StatusServiceUnavailable })
	clock := time.Now().UTC().Truncate(time.Second)
	rcv.tolerance = 2 * time.Hour // the dispatcher's clock runs ahead of the receiver's
	r, err := ns.PutRule(Rule{Tenant: "acme", Meter: "ai_tokens", Condition: Condition{Kind: CondUsageAmount, Amount: 1},
		Channels: []Channel{{Type: ChannelWebhook, URL: rcv.URL}}}, clock)
	if err != nil {
		t.Fatal(err)
	}
	rcv.Trust(r.Channels[0].Secret)
	if wrote, err := ns.Fire(r, Event{Type: "usage.amount_reached", RuleID: r.ID, Version: r.Version, Tenant: "acme", Meter: "ai_tokens", Period: clock.Format("2006-01"), Used: 5, At: clock}, clock); err != nil || !wrote {
		t.Fatalf("fire: %v %v", wrote, err)
	}
	d := NewDispatcher(ns, nil, testLog(t))
	d.Backoff = Backoff{First: time.Minute, Max: 8 * time.Minute, GiveUp: time.Hour}
	d.Now = func() time.Time { return clock }
	var gaps []time.Duration
	for range 100 {
		next, err := d.Drain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if next.IsZero() {
			break
		}
		gaps = append(gaps, next.Sub(clock))
		clock = next
	}
	// Doubling from 1 min to the 8 min cap; the attempt 63 min after the event is past GiveUp.
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute}
	for range 7 {
		want = append(want, 8*time.Minute)
	}
	if fmt.Sprint(gaps) != fmt.Sprint(want) {
		t.Fatalf("retry delays %v, want %v", gaps, want)
	}
	dels, err := ns.Deliveries(ctx, "acme", StateDead, 0)
	if err != nil || len(dels) != 1 {
		t.Fatalf("dead deliveries %v (%v), want 1", dels, err)
	}
	dead := dels[0]
	log, err := ns.Attempts(ctx, dead.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 11 || dead.Attempts != 11 || log[10].Status != 503 || log[10].OK || !strings.Contains(dead.LastError, "503") {
		t.Fatalf("log %+v, delivery %+v", log, dead)
	}
	if n, _ := ns.Pending(ctx); n != 0 {
		t.Fatalf("%d pending after the dead letter", n)
	}

	// The receiver is fixed; the operator replays the dead delivery.
	rcv.SetStatus(func(int, string) int { return http.StatusNoContent })
	if _, err := ns.Replay("globex", dead.ID, clock); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant's replay: %v, want not found", err)
	}
	if _, err := ns.Replay("acme", dead.ID, clock); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := ns.Delivery(dead.ID)
	if err != nil || got.State != StateDelivered || got.Attempts != 12 {
		t.Fatalf("after the replay: %+v %v", got, err)
	}
	all := rcv.Received()
	if len(all) != 12 {
		t.Fatalf("receiver saw %d attempts, want 12", len(all))
	}
	for _, a := range all {
		if a.ID != dead.ID {
			t.Fatalf("webhook-id %q changed (want %q on every attempt)", a.ID, dead.ID)
		}
	}
}

// STARTTLS and AUTH against mailpit requiring both; a server without STARTTLS is refused when
// require_tls is set, and a wrong address is an attempt failure, not a crash.
func TestSMTPStartTLSAndAuth(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir)
	mp := notifytest.StartMailpit(t, "--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile, "--smtp-require-starttls", "--smtp-auth-accept-any")
	s := &SMTP{Addr: mp.SMTP, From: "usagemeter@platform.test", Username: "notifier", CAFile: certFile, RequireTLS: true}
	pw := dir + "/pw"
	if err := writeFile(pw, "secret\n"); err != nil {
		t.Fatal(err)
	}
	s.PasswordFile = pw
	if err := s.load(); err != nil {
		t.Fatal(err)
	}
	if s.password != "secret" {
		t.Fatalf("password %q", s.password)
	}
	m, err := mailOf(Event{ID: "evt_1", RuleID: "rule_1", Tenant: "acme <b>", Meter: "ai_tokens", Period: "2026-12", Used: 5,
		Condition: Condition{Kind: CondQuotaPercent, Percent: 80}, Limit: 6, At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m.To, m.MessageID = []string{"a@acme.test"}, "evt_1.0"
	if err := s.send(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
	msgs := mp.Messages(t)
	if len(msgs) != 1 || !strings.Contains(msgs[0].HTML, "acme &lt;b&gt;") || !strings.Contains(msgs[0].Text, "acme <b>") {
		t.Fatalf("messages %+v", msgs)
	}

	plain := notifytest.StartMailpit(t, "--smtp-auth-accept-any", "--smtp-auth-allow-insecure")
	strict := &SMTP{Addr: plain.SMTP, From: "usagemeter@platform.test", RequireTLS: true}
	if err := strict.send(ctxT(t), m); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("require_tls against a plain server: %v", err)
	}
	if got := plain.Messages(t); len(got) != 0 {
		t.Fatalf("the plain server got %d messages", len(got))
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(nil)
	if err != nil || c.Workers != 4 || c.RetryGiveUp != 26*time.Hour {
		t.Fatalf("defaults %+v %v", c, err)
	}
	for _, bad := range []string{"workerz: 3", "retry_give_up: 1h", "smtp: {addr: nohost}", "smtp: {addr: 'h:25', from: 'x y'}"} {
		var n yamlNode
		if err := n.parse(bad); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseConfig(n.node()); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	var n yamlNode
	if err := n.parse("workers: 2\nsmtp: {addr: '127.0.0.1:25', from: a@b.test}"); err != nil {
		t.Fatal(err)
	}
	if c, err := ParseConfig(n.node()); err != nil || c.Workers != 2 || c.SMTP.Addr != "127.0.0.1:25" {
		t.Fatalf("%+v %v", c, err)
	}
}

// A webhook answering with a redirect is a failed attempt: the signed request is not re-sent
// to another address.
func TestWebhookRedirectIsNotFollowed(t *testing.T) {
	ctx := ctxT(t)
	rcv := newReceiver(t)
	redirect := httptest.NewServer(http.RedirectHandler(rcv.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	ns := NewStore(openDB(t, t.TempDir()))
	now := time.Now()
	r, err := ns.PutRule(Rule{Tenant: "acme", Meter: "ai_tokens", Condition: Condition{Kind: CondUsageAmount, Amount: 1},
		Channels: []Channel{{Type: ChannelWebhook, URL: redirect.URL}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	rcv.Trust(r.Channels[0].Secret)
	if _, err := ns.Fire(r, Event{RuleID: r.ID, Version: r.Version, Tenant: "acme", Period: "2026-12", At: now}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDispatcher(ns, nil, testLog(t)).Drain(ctx); err != nil {
		t.Fatal(err)
	}
	ds, err := ns.Deliveries(ctx, "acme", StatePending, 0)
	if err != nil || len(ds) != 1 || !strings.Contains(ds[0].LastError, "307") {
		t.Fatalf("after a redirect: %+v %v", ds, err)
	}
	if n := len(rcv.Received()); n != 0 {
		t.Fatalf("the redirect was followed: the receiver got %d requests", n)
	}
}

// A crossing committed while no evaluator ran (the process died between the ledger's commit and
// the outbox write) fires at the next start, once: the condition is read from the reopened
// ledger's durable state.
func TestCrossingCommittedBeforeACrashFiresAtStart(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	st, err := ledger.Open(ctx, ledger.Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	ns := NewStore(st.DB())
	if _, err := ns.PutRule(Rule{Tenant: "acme", Meter: "ai_tokens", Condition: Condition{Kind: CondQuotaPercent, Percent: 80},
		Channels: []Channel{{Type: ChannelWebhook, URL: "http://127.0.0.1:1/never"}}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	commitTokens(t, st, "c-1", "acme", 900)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = ledger.Open(ctx, ledger.Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	limits := func(context.Context, string, string) (int64, bool) { return 1000, true }
	for i, want := range []int{1, 0} {
		n, err := NewEvaluator(NewStore(st.DB()), st, limits, testLog(t)).Evaluate(ctx)
		if err != nil || n != want {
			t.Fatalf("start %d: %d events (%v), want %d", i, n, err, want)
		}
	}
	ds, err := NewStore(st.DB()).Deliveries(ctx, "acme", StatePending, 0)
	if err != nil || len(ds) != 1 {
		t.Fatalf("pending deliveries %v (%v), want 1", ds, err)
	}
}
