package insights

import (
	"context"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// TestPlanAdviceNeedsRoomAndHistory: a plan is advised only when the tenant's usage of the
// whole month stays under that plan's warning level (issue #19: every enterprise tenant was told
// to move to free, whose limits its usage exceeded), and only on a month the store recorded
// whole.
func TestPlanAdviceNeedsRoomAndHistory(t *testing.T) {
	cfg, err := config.Parse([]byte(`
default_plan: enterprise
plans:
  - {name: free, enforcement: hard, warning_ratio: 0.8, limits: {ai_tokens: 1000}}
  - {name: enterprise, enforcement: soft}
billing:
  plans:
    - {name: free}
    - {name: enterprise, base_fee: "500.00"}
`))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := billing.Catalogue(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := ledgertest.Open(t)
	// October, the month rated at 2026-11-20: heavy uses 5,000 tokens (5× free's limit), edge
	// 900 (under the limit, inside free's warning band), light 100.
	ledgertest.Load(t, st,
		ai(d(9, 20, 9), "other", "u", "chat", "m", 1, 0), // the store's history begins on September 20
		ai(d(10, 5, 9), "heavy", "u", "chat", "m", 5000, 0),
		ai(d(10, 5, 9), "edge", "u", "chat", "m", 900, 0),
		ai(d(10, 5, 9), "light", "u", "chat", "m", 100, 0),
	)
	e := &Engine{Store: st, Config: func() *config.Config { return cfg }, Pricing: Pricing{
		Catalogue: func() pricing.Catalogue { return cat },
		Stock:     billing.StockFunc(meter.Defaults()),
	}}
	advised := func(at time.Time) map[string]string {
		t.Helper()
		ins, err := e.Detect(context.Background(), []string{"heavy", "edge", "light"}, at)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, in := range ins {
			if in.Kind == KindPlanRightSizing {
				out[in.Tenant] = in.Title
			}
		}
		return out
	}
	got := advised(at)
	if len(got) != 1 || got["light"] != "Move from plan enterprise to free" {
		t.Errorf("advice %v, want only light moved to free (heavy exceeds free's limit, edge is in its warning band)", got)
	}
	// September is not a whole month of the store's history (it begins on the 20th): no advice.
	if got := advised(d(10, 20, 0)); len(got) != 0 {
		t.Errorf("advice on a month before the history: %v", got)
	}
}
