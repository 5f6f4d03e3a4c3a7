package billing

import (
	"errors"
	"strings"
	"testing"

	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/config"
)

func parseConfig(t *testing.T, src string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCatalogueFromConfig(t *testing.T) {
	// No billing section: default prices by plan name, other plans free of charge.
	cfg := parseConfig(t, `
default_plan: free
plans:
  - {name: free, enforcement: hard, limits: {ai_tokens: 1000}}
  - {name: pro, enforcement: soft}
  - {name: custom, enforcement: soft}
tenants:
  - {id: acme, name: Acme Corp, plan: pro}
`)
	cat, err := Catalogue(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Plans) != 3 || cat.Plans[1].BaseFee != 19900 || cat.Plans[2].Name != "custom" || len(cat.Plans[2].Charges) != 0 {
		t.Fatalf("plans: %+v", cat.Plans)
	}
	if cat.Buyer("acme").Name != "Acme Corp" {
		t.Errorf("buyer: %+v", cat.Buyer("acme"))
	}

	// A billing section must price exactly the declared plans; errors carry the file name.
	cfg = parseConfig(t, `
default_plan: free
plans:
  - {name: free, enforcement: hard}
billing:
  currency: EUR
  plans:
    - {name: free}
    - {name: gold, base_fee: "5.00"}
`)
	cfg.File = "usagemeter.yml"
	_, err = Catalogue(cfg)
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "billing.plans[1].name" || !strings.HasPrefix(err.Error(), "usagemeter.yml:") {
		t.Fatalf("undeclared plan: %v", err)
	}
	cfg = parseConfig(t, `
default_plan: free
plans:
  - {name: free, enforcement: hard}
billing:
  currency: EUR
  plans:
    - {name: free, base_fee: "1.234"}
`)
	if _, err = Catalogue(cfg); !errors.As(err, &fe) || fe.Line != 8 || fe.Field != "billing.plans[0].base_fee" {
		t.Fatalf("bad fee: %v", err)
	}
}

func TestNewFromConfigAndReload(t *testing.T) {
	db := usagetest.OpenDB(t)
	cfg := parseConfig(t, `
default_plan: free
plans:
  - {name: free, enforcement: hard, limits: {ai_tokens: 1000}}
  - {name: pro, enforcement: soft}
tenants:
  - {id: acme, plan: pro}
`)
	s, err := NewFromConfig(cfg, db, usagetest.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if p, _ := s.PlanAt(ctx, "acme", s.Now()); p != "pro" {
		t.Fatalf("acme on %s", p)
	}
	if p, _ := s.PlanAt(ctx, "other", s.Now()); p != "free" {
		t.Fatalf("other on %s", p)
	}
	// The reload moves acme to free and reprices pro.
	cfg2 := parseConfig(t, `
default_plan: free
plans:
  - {name: free, enforcement: hard}
  - {name: pro, enforcement: soft}
tenants:
  - {id: acme, plan: free}
billing:
  plans:
    - {name: free}
    - {name: pro, base_fee: "1.00"}
`)
	if err := s.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.PlanAt(ctx, "acme", s.Now()); p != "free" {
		t.Fatalf("after reload acme on %s", p)
	}
	cat := s.Catalogue()
	if pl, _ := cat.Plan("pro"); pl.BaseFee != 100 {
		t.Fatalf("pro after reload: %+v", pl)
	}
}
