package guard_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/guard"
	"github.com/usagemeter/usagemeter/exporter/limit"
)

// TestCallerLimit: a credential with its maximum of requests in flight gets 429 with
// Retry-After as a problem document, other credentials are still served, and its slots come
// back when its requests finish. Callers without a valid credential are limited by address.
func TestCallerLimit(t *testing.T) {
	m := limit.NewMetrics(quiet)
	q := limit.NewRequests(10, 2, m)
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	g, c := setup(t, newAudit(t), func(o *guard.Options) { o.Callers = q })
	entered := make(chan struct{})
	unblock := make(chan struct{})
	h := mux(g, []route.Route{{Method: "GET", Pattern: "/v1/meters", Action: route.ActionMetersRead, Handler: func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("block") != "" {
			entered <- struct{}{}
			<-unblock
		}
	}}})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rec := do(h, "GET", "/v1/meters?block=1", c.acmeAdmin); rec.Code != 200 {
				t.Errorf("blocked request: %d", rec.Code)
			}
		}()
		<-entered
	}
	rec := do(h, "GET", "/v1/meters", c.acmeAdmin)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || rec.Header().Get("Content-Type") != problem.ContentType ||
		!strings.Contains(rec.Body.String(), "max_requests_in_flight_per_credential") {
		t.Errorf("third request of the same credential: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if rec := do(h, "GET", "/v1/meters", c.globexAdmin); rec.Code != 200 {
		t.Errorf("another credential: %d %s", rec.Code, rec.Body)
	}
	close(unblock)
	wg.Wait()
	if rec := do(h, "GET", "/v1/meters", c.acmeAdmin); rec.Code != 200 {
		t.Errorf("after its requests finished: %d %s", rec.Code, rec.Body)
	}
	// Without a valid credential the caller is its address: two requests stuck in flight
	// from 192.0.2.1 (httptest's) leave a third from there refused.
	release1, _ := q.Acquire(nil, "ip:192.0.2.1")
	release2, _ := q.Acquire(nil, "ip:192.0.2.1")
	if rec := do(h, "GET", "/v1/meters", "um_nope"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("bad credential from a busy address: %d %s", rec.Code, rec.Body)
	}
	release1()
	release2()
	if rec := do(h, "GET", "/v1/meters", "um_nope"); rec.Code != http.StatusUnauthorized {
		t.Errorf("bad credential from an idle address: %d %s", rec.Code, rec.Body)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP usage_exporter_http_limit_rejections_total Connections and requests refused because a limit was reached, by limit (connections: closed at accept; requests_in_flight: 503; requests_in_flight_per_credential: 429).
# TYPE usage_exporter_http_limit_rejections_total counter
usage_exporter_http_limit_rejections_total{limit="connections"} 0
usage_exporter_http_limit_rejections_total{limit="requests_in_flight"} 0
usage_exporter_http_limit_rejections_total{limit="requests_in_flight_per_credential"} 2
`), "usage_exporter_http_limit_rejections_total"); err != nil {
		t.Error(err)
	}
	if err := testutil.CollectAndCompare(g, strings.NewReader(`
# HELP usage_exporter_guard_decisions_total Requests decided by the guard, by route action and outcome (allow, deny, unauthenticated, error, limited).
# TYPE usage_exporter_guard_decisions_total counter
usage_exporter_guard_decisions_total{action="meters.read",outcome="allow"} 4
usage_exporter_guard_decisions_total{action="meters.read",outcome="limited"} 2
usage_exporter_guard_decisions_total{action="meters.read",outcome="unauthenticated"} 1
`), "usage_exporter_guard_decisions_total"); err != nil {
		t.Error(err)
	}
}

// TestDenialAuditRateLimit: refusals of requests without a valid credential are audited up to
// the token bucket and counted past it, with one warning; denials of authenticated callers are
// all audited.
func TestDenialAuditRateLimit(t *testing.T) {
	log := newAudit(t)
	var logged strings.Builder
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: &logged}, nil))
	g, c := setup(t, log, func(o *guard.Options) {
		o.DenialAudit = rate.NewLimiter(rate.Every(time.Hour), 3)
		o.Logger = logger
	})
	h := mux(g, routes(t, g))
	for i := range 10 {
		token := ""
		if i%2 == 1 {
			token = "um_nope"
		}
		if rec := do(h, "GET", "/v1/usage?tenant="+strings.Repeat("x", 10000), token); rec.Code != 401 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if rec := do(h, "POST", "/v1/webhooks/pay", ""); rec.Code != 401 {
		t.Fatalf("webhook: %d", rec.Code)
	}
	for range 5 {
		if rec := do(h, "GET", "/v1/usage?tenant=acme", c.globexAdmin); rec.Code != 403 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	es := entries(t, log)
	var anonymous, denied int
	for _, e := range es {
		switch {
		case e.Kind == "none":
			anonymous++
			if len(e.Tenant) > audit.DefaultMaxFieldBytes+64 {
				t.Errorf("tenant stored with %d bytes", len(e.Tenant))
			}
		case !e.Allow:
			denied++
		}
	}
	if anonymous != 3 || denied != 5 {
		t.Errorf("audited %d refusals without credentials (want 3, the burst) and %d denials of a credential (want 5)", anonymous, denied)
	}
	if err := testutil.CollectAndCompare(g, strings.NewReader(`
# HELP usage_exporter_audit_denials_suppressed_total Refusals of requests without a valid credential not written to the audit trail because they passed http.denial_audit_rate.
# TYPE usage_exporter_audit_denials_suppressed_total counter
usage_exporter_audit_denials_suppressed_total 8
`), "usage_exporter_audit_denials_suppressed_total"); err != nil {
		t.Error(err)
	}
	if n := strings.Count(logged.String(), "usage_exporter_audit_denials_suppressed_total"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logged.String())
	}
	if res, err := log.Verify(context.Background()); err != nil || res.Entries != uint64(len(es)) {
		t.Fatalf("audit chain: %+v, %v", res, err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
