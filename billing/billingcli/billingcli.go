// Package billingcli adds the billing commands to usagectl. They talk to the exporter's HTTP API,
// so they work against a running exporter with the caller's credentials and go through the same
// authorization and audit as any other client.
package billingcli

import (
	"bytes"
	"encoding/json"
	"fmt"
	apiclient "github.com/usagemeter/usagemeter/exporter/api/client"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// Register adds `invoices`, `payments`, `plans` and `tenants` commands to app, printing to stdout.
func Register(app *kingpin.Application) { RegisterTo(app, os.Stdout) }

// RegisterTo is Register with another output (tests).
func RegisterTo(app *kingpin.Application, out io.Writer) {
	c := &client{Client: apiclient.Client{Out: out}}
	flags := func(cmd *kingpin.CmdClause) {
		c.AddFlags(cmd)
	}

	inv := app.Command("invoices", "Invoices: run a month, show, export, finalize, void, credit.")
	flags(inv)
	var period string
	run := inv.Command("run", "Rate a month for every tenant: drafts during the grace period, finalized after it.")
	run.Flag("period", "month to invoice, YYYY-MM").Required().StringVar(&period)
	run.Action(func(*kingpin.ParseContext) error {
		return c.do("POST", "/v1/invoices/run", url.Values{"period": {period}}, nil, "")
	})

	inv.Command("collect", "Send the finalized invoices queued for Stripe (those of tenants with collection: stripe).").
		Action(func(*kingpin.ParseContext) error {
			return c.do("POST", "/v1/invoices/collect", nil, nil, "")
		})

	inv.Command("dun", "Take the dunning steps that are due on overdue invoices (reminders, Stripe retries, holds).").
		Action(func(*kingpin.ParseContext) error {
			return c.do("POST", "/v1/billing/dunning/run", nil, nil, "")
		})

	var lTenant, lPeriod, lStatus string
	list := inv.Command("list", "List invoices.")
	list.Flag("tenant", "only this tenant").StringVar(&lTenant)
	list.Flag("period", "only this month, YYYY-MM").StringVar(&lPeriod)
	list.Flag("status", "draft, finalized, paid or void").StringVar(&lStatus)
	list.Action(func(*kingpin.ParseContext) error {
		q := url.Values{}
		for k, v := range map[string]string{"tenant": lTenant, "period": lPeriod, "status": lStatus} {
			if v != "" {
				q.Set(k, v)
			}
		}
		return c.do("GET", "/v1/invoices", q, nil, "")
	})

	var number, output, tenant string
	numbered := func(name, help string) *kingpin.CmdClause {
		cmd := inv.Command(name, help)
		cmd.Arg("number", "invoice number (INV-...) or draft id (DRAFT-...)").Required().StringVar(&number)
		cmd.Flag("tenant", "the invoice's tenant (needed by tenant-scoped tokens)").StringVar(&tenant)
		return cmd
	}
	tq := func(q url.Values) url.Values {
		if tenant != "" {
			q.Set("tenant", tenant)
		}
		return q
	}
	numbered("show", "Print an invoice as JSON.").Action(func(*kingpin.ParseContext) error {
		return c.do("GET", "/v1/invoices/"+url.PathEscape(number), tq(url.Values{"format": {"json"}}), nil, "")
	})
	numbered("csv", "Print an invoice as CSV.").Action(func(*kingpin.ParseContext) error {
		return c.do("GET", "/v1/invoices/"+url.PathEscape(number), tq(url.Values{"format": {"csv"}}), nil, "")
	})
	pdf := numbered("pdf", "Write an invoice as PDF (to NUMBER.pdf unless --output).")
	pdf.Flag("output", "file to write, - for stdout").Short('o').StringVar(&output)
	pdf.Action(func(*kingpin.ParseContext) error {
		dest := output
		if dest == "" {
			dest = number + ".pdf"
		}
		return c.do("GET", "/v1/invoices/"+url.PathEscape(number), tq(url.Values{"format": {"pdf"}}), nil, dest)
	})
	numbered("finalize", "Finalize a draft now (refused during the grace period).").Action(func(*kingpin.ParseContext) error {
		return c.do("POST", "/v1/invoices/"+url.PathEscape(number)+"/finalize", tq(url.Values{}), nil, "")
	})
	var reason, amount string
	void := numbered("void", "Void a finalized, unpaid invoice.")
	void.Flag("reason", "why").Required().StringVar(&reason)
	void.Action(func(*kingpin.ParseContext) error {
		return c.do("POST", "/v1/invoices/"+url.PathEscape(number)+"/void", tq(url.Values{}), map[string]string{"reason": reason}, "")
	})
	cn := numbered("credit-note", "Issue a credit note on a finalized invoice.")
	cn.Flag("amount", "amount in major units, e.g. 12.50").Required().StringVar(&amount)
	cn.Flag("reason", "why").Required().StringVar(&reason)
	cn.Action(func(*kingpin.ParseContext) error {
		return c.do("POST", "/v1/invoices/"+url.PathEscape(number)+"/credit-notes", tq(url.Values{}),
			map[string]string{"amount": amount, "reason": reason}, "")
	})

	pay := app.Command("payments", "Payments and prepaid credit.")
	flags(pay)
	var pr struct{ tenant, invoice, amount, currency, method, reference, received string }
	rec := pay.Command("record", "Record a payment against an invoice, or a prepayment (credit) for a tenant.")
	rec.Flag("invoice", "invoice number paid").StringVar(&pr.invoice)
	rec.Flag("tenant", "tenant (required without --invoice: the payment becomes prepaid credit)").StringVar(&pr.tenant)
	rec.Flag("amount", "amount in major units, e.g. 120.00").Required().StringVar(&pr.amount)
	rec.Flag("currency", "ISO 4217 code (default: the catalogue's)").StringVar(&pr.currency)
	rec.Flag("method", "bank_transfer, card, cash, ...").Default("bank_transfer").StringVar(&pr.method)
	rec.Flag("reference", "bank or provider reference").StringVar(&pr.reference)
	rec.Flag("received-at", "when the money arrived, RFC 3339 (default now)").StringVar(&pr.received)
	rec.Action(func(*kingpin.ParseContext) error {
		if pr.invoice == "" && pr.tenant == "" {
			return fmt.Errorf("payments record: --invoice or --tenant is required")
		}
		body := map[string]any{"tenant": pr.tenant, "invoice": pr.invoice, "amount": pr.amount,
			"currency": pr.currency, "method": pr.method, "reference": pr.reference}
		if pr.received != "" {
			t, err := time.Parse(time.RFC3339, pr.received)
			if err != nil {
				return fmt.Errorf("--received-at: %w", err)
			}
			body["received_at"] = t
		}
		q := url.Values{}
		if pr.tenant != "" {
			q.Set("tenant", pr.tenant)
		}
		return c.do("POST", "/v1/payments", q, body, "")
	})
	var plTenant string
	pl := pay.Command("list", "List payments.")
	pl.Flag("tenant", "only this tenant").StringVar(&plTenant)
	pl.Action(func(*kingpin.ParseContext) error {
		q := url.Values{}
		if plTenant != "" {
			q.Set("tenant", plTenant)
		}
		return c.do("GET", "/v1/payments", q, nil, "")
	})

	plans := app.Command("plans", "Plans and plan changes.")
	flags(plans)
	plans.Command("list", "Show the price catalogue.").Action(func(*kingpin.ParseContext) error {
		return c.do("GET", "/v1/plans", nil, nil, "")
	})
	var chTenant, chPlan, chEffective string
	ch := plans.Command("change", "Move a tenant to another plan (prorated).")
	ch.Arg("tenant", "tenant id").Required().StringVar(&chTenant)
	ch.Arg("plan", "plan name").Required().StringVar(&chPlan)
	ch.Flag("effective", "from when, RFC 3339 (default now)").StringVar(&chEffective)
	ch.Action(func(*kingpin.ParseContext) error {
		body := map[string]any{"plan": chPlan}
		if chEffective != "" {
			t, err := time.Parse(time.RFC3339, chEffective)
			if err != nil {
				return fmt.Errorf("--effective: %w", err)
			}
			body["effective"] = t
		}
		return c.do("POST", "/v1/tenants/"+url.PathEscape(chTenant)+"/plan", nil, body, "")
	})
	var shTenant string
	plans.Command("show", "A tenant's plan, plan history and upgrade suggestion.").
		Action(func(*kingpin.ParseContext) error {
			return c.do("GET", "/v1/tenants/"+url.PathEscape(shTenant)+"/plan", nil, nil, "")
		}).Arg("tenant", "tenant id").Required().StringVar(&shTenant)

	ten := app.Command("tenants", "Tenant accounts.")
	flags(ten)
	var bTenant string
	ten.Command("balance", "What a tenant owes and its prepaid credit.").
		Action(func(*kingpin.ParseContext) error {
			return c.do("GET", "/v1/tenants/"+url.PathEscape(bTenant)+"/balance", nil, nil, "")
		}).Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	ten.Command("statement", "A tenant's statement: invoices, payments, credit notes, running balance.").
		Action(func(*kingpin.ParseContext) error {
			return c.do("GET", "/v1/tenants/"+url.PathEscape(bTenant)+"/statement", nil, nil, "")
		}).Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	ten.Command("grants", "A tenant's credit grants and what they hold (available, pending, used, expired).").
		Action(func(*kingpin.ParseContext) error {
			return c.do("GET", "/v1/tenants/"+url.PathEscape(bTenant)+"/credit-grants", nil, nil, "")
		}).Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	var code string
	redeem := ten.Command("redeem", "Redeem a coupon of billing.coupons for a tenant, from the current month on.")
	redeem.Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	redeem.Arg("code", "coupon code").Required().StringVar(&code)
	redeem.Action(func(*kingpin.ParseContext) error {
		return c.do("POST", "/v1/tenants/"+url.PathEscape(bTenant)+"/coupons", nil, map[string]string{"code": code}, "")
	})
	ten.Command("coupons", "A tenant's redeemed coupons.").
		Action(func(*kingpin.ParseContext) error {
			return c.do("GET", "/v1/tenants/"+url.PathEscape(bTenant)+"/coupons", nil, nil, "")
		}).Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	var g struct {
		Kind     string     `json:"kind"`
		Reason   string     `json:"reason"`
		Amount   string     `json:"amount"`
		Priority int        `json:"priority"`
		Expires  *time.Time `json:"expires,omitempty"`
	}
	var gExpires string
	grant := ten.Command("grant", "Give a tenant a credit grant, drawn down by its invoices at finalization.")
	grant.Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	grant.Flag("amount", "amount in major units, e.g. 50.00").Required().StringVar(&g.Amount)
	grant.Flag("kind", "promotional or purchased").Default("promotional").StringVar(&g.Kind)
	grant.Flag("priority", "drawn in increasing priority, then by expiry").Default("0").IntVar(&g.Priority)
	grant.Flag("expires", "expiry, RFC 3339 (default: never)").StringVar(&gExpires)
	grant.Flag("reason", "why").StringVar(&g.Reason)
	grant.Action(func(*kingpin.ParseContext) error {
		if gExpires != "" {
			t, err := time.Parse(time.RFC3339, gExpires)
			if err != nil {
				return fmt.Errorf("--expires: %w", err)
			}
			g.Expires = &t
		}
		return c.do("POST", "/v1/tenants/"+url.PathEscape(bTenant)+"/credit-grants", nil, g, "")
	})
}

// client sends JSON bodies through the shared API client.
type client struct{ apiclient.Client }

func (c *client) do(method, path string, q url.Values, body any, dest string) error {
	if body == nil {
		return c.Do(method, path, q, nil, "", dest)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	return c.Do(method, path, q, bytes.NewReader(b), "application/json", dest)
}
