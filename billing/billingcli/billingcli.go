// Package billingcli adds the billing commands to usagectl. They talk to the exporter's HTTP API,
// so they work against a running exporter with the caller's credentials and go through the same
// authorization and audit as any other client.
package billingcli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/alecthomas/kingpin/v2"

	apiclient "github.com/usagemeter/usagemeter/exporter/api/client"
	"github.com/usagemeter/usagemeter/exporter/api/openapi/usageapi"
	"github.com/usagemeter/usagemeter/exporter/api/timeparse"
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
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.PostV1InvoicesRun(ctx, &usageapi.PostV1InvoicesRunParams{Period: period})
		})
	})

	inv.Command("collect", "Send the finalized invoices queued for Stripe (those of tenants with collection: stripe).").
		Action(func(*kingpin.ParseContext) error {
			return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
				return api.PostV1InvoicesCollect(ctx)
			})
		})

	inv.Command("dun", "Take the dunning steps that are due on overdue invoices (reminders, Stripe retries, holds).").
		Action(func(*kingpin.ParseContext) error {
			return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
				return api.PostV1BillingDunningRun(ctx)
			})
		})

	var lTenant, lPeriod, lStatus string
	list := inv.Command("list", "List invoices.")
	list.Flag("tenant", "only this tenant").StringVar(&lTenant)
	list.Flag("period", "only this month, YYYY-MM").StringVar(&lPeriod)
	list.Flag("status", "draft, finalized, paid or void").StringVar(&lStatus)
	list.Action(func(*kingpin.ParseContext) error {
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.GetV1Invoices(ctx, &usageapi.GetV1InvoicesParams{Tenant: opt(lTenant), Period: opt(lPeriod), Status: opt(lStatus)})
		})
	})

	var number, output, tenant string
	numbered := func(name, help string) *kingpin.CmdClause {
		cmd := inv.Command(name, help)
		cmd.Arg("number", "invoice number (INV-...) or draft id (DRAFT-...)").Required().StringVar(&number)
		cmd.Flag("tenant", "the invoice's tenant (needed by tenant-scoped tokens)").StringVar(&tenant)
		return cmd
	}
	// show fetches the invoice in a format, to dest ("" or - for stdout).
	show := func(format usageapi.GetV1InvoicesIdParamsFormat, dest string) error {
		return c.Call(dest, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.GetV1InvoicesId(ctx, number, &usageapi.GetV1InvoicesIdParams{Tenant: opt(tenant), Format: &format})
		})
	}
	numbered("show", "Print an invoice as JSON.").Action(func(*kingpin.ParseContext) error {
		return show(usageapi.GetV1InvoicesIdParamsFormatJson, "")
	})
	numbered("csv", "Print an invoice as CSV.").Action(func(*kingpin.ParseContext) error {
		return show(usageapi.GetV1InvoicesIdParamsFormatCsv, "")
	})
	pdf := numbered("pdf", "Write an invoice as PDF (to NUMBER.pdf unless --output).")
	pdf.Flag("output", "file to write, - for stdout").Short('o').StringVar(&output)
	pdf.Action(func(*kingpin.ParseContext) error {
		dest := output
		if dest == "" {
			dest = number + ".pdf"
		}
		return show(usageapi.GetV1InvoicesIdParamsFormatPdf, dest)
	})
	numbered("finalize", "Finalize a draft now (refused during the grace period).").Action(func(*kingpin.ParseContext) error {
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.PostV1InvoicesIdFinalize(ctx, number, &usageapi.PostV1InvoicesIdFinalizeParams{Tenant: opt(tenant)})
		})
	})
	var reason, amount string
	void := numbered("void", "Void a finalized, unpaid invoice.")
	void.Flag("reason", "why").Required().StringVar(&reason)
	void.Action(func(*kingpin.ParseContext) error {
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.PostV1InvoicesIdVoid(ctx, number, &usageapi.PostV1InvoicesIdVoidParams{Tenant: opt(tenant)}, usageapi.VoidRequest{Reason: reason})
		})
	})
	cn := numbered("credit-note", "Issue a credit note on a finalized invoice.")
	cn.Flag("amount", "amount in major units, e.g. 12.50").Required().StringVar(&amount)
	cn.Flag("reason", "why").Required().StringVar(&reason)
	cn.Action(func(*kingpin.ParseContext) error {
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.PostV1InvoicesIdCreditNotes(ctx, number, &usageapi.PostV1InvoicesIdCreditNotesParams{Tenant: opt(tenant)},
				usageapi.CreditNoteRequest{Amount: amount, Reason: opt(reason)})
		})
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
		body := usageapi.BillingPaymentRequest{Tenant: opt(pr.tenant), Invoice: opt(pr.invoice), Amount: pr.amount,
			Currency: opt(pr.currency), Method: opt(pr.method), Reference: opt(pr.reference)} // no received_at: now
		if pr.received != "" {
			t, err := timeparse.RFC3339("--received-at", pr.received)
			if err != nil {
				return err
			}
			body.ReceivedAt = &t
		}
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.PostV1Payments(ctx, &usageapi.PostV1PaymentsParams{Tenant: opt(pr.tenant)}, body)
		})
	})
	var plTenant string
	pl := pay.Command("list", "List payments.")
	pl.Flag("tenant", "only this tenant").StringVar(&plTenant)
	pl.Action(func(*kingpin.ParseContext) error {
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.GetV1Payments(ctx, &usageapi.GetV1PaymentsParams{Tenant: opt(plTenant)})
		})
	})

	plans := app.Command("plans", "Plans and plan changes.")
	flags(plans)
	plans.Command("list", "Show the price catalogue.").Action(func(*kingpin.ParseContext) error {
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.GetV1Plans(ctx)
		})
	})
	var chTenant, chPlan, chEffective string
	ch := plans.Command("change", "Move a tenant to another plan (prorated).")
	ch.Arg("tenant", "tenant id").Required().StringVar(&chTenant)
	ch.Arg("plan", "plan name").Required().StringVar(&chPlan)
	ch.Flag("effective", "from when, RFC 3339 (default now)").StringVar(&chEffective)
	ch.Action(func(*kingpin.ParseContext) error {
		body := usageapi.ChangePlanRequest{Plan: chPlan}
		if chEffective != "" {
			t, err := timeparse.RFC3339("--effective", chEffective)
			if err != nil {
				return err
			}
			body.Effective = &t
		}
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.PostV1TenantsTenantPlan(ctx, chTenant, body)
		})
	})
	var shTenant string
	plans.Command("show", "A tenant's plan, plan history and upgrade suggestion.").
		Action(func(*kingpin.ParseContext) error {
			return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
				return api.GetV1TenantsTenantPlan(ctx, shTenant)
			})
		}).Arg("tenant", "tenant id").Required().StringVar(&shTenant)

	ten := app.Command("tenants", "Tenant accounts.")
	flags(ten)
	var bTenant string
	ten.Command("balance", "What a tenant owes and its prepaid credit.").
		Action(func(*kingpin.ParseContext) error {
			return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
				return api.GetV1TenantsTenantBalance(ctx, bTenant)
			})
		}).Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	ten.Command("statement", "A tenant's statement: invoices, payments, credit notes, running balance.").
		Action(func(*kingpin.ParseContext) error {
			return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
				return api.GetV1TenantsTenantStatement(ctx, bTenant)
			})
		}).Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	ten.Command("grants", "A tenant's credit grants and what they hold (available, pending, used, expired).").
		Action(func(*kingpin.ParseContext) error {
			return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
				return api.GetV1TenantsTenantCreditGrants(ctx, bTenant)
			})
		}).Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	var code string
	redeem := ten.Command("redeem", "Redeem a coupon of billing.coupons for a tenant, from the current month on.")
	redeem.Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	redeem.Arg("code", "coupon code").Required().StringVar(&code)
	redeem.Action(func(*kingpin.ParseContext) error {
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.PostV1TenantsTenantCoupons(ctx, bTenant, usageapi.CouponRequest{Code: code})
		})
	})
	ten.Command("coupons", "A tenant's redeemed coupons.").
		Action(func(*kingpin.ParseContext) error {
			return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
				return api.GetV1TenantsTenantCoupons(ctx, bTenant)
			})
		}).Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	var g usageapi.BillingGrantRequest
	var gKind, gReason, gExpires string
	var gPriority int
	grant := ten.Command("grant", "Give a tenant a credit grant, drawn down by its invoices at finalization.")
	grant.Arg("tenant", "tenant id").Required().StringVar(&bTenant)
	grant.Flag("amount", "amount in major units, e.g. 50.00").Required().StringVar(&g.Amount)
	grant.Flag("kind", "promotional or purchased").Default("promotional").StringVar(&gKind)
	grant.Flag("priority", "drawn in increasing priority, then by expiry").Default("0").IntVar(&gPriority)
	grant.Flag("expires", "expiry, RFC 3339 (default: never)").StringVar(&gExpires)
	grant.Flag("reason", "why").StringVar(&gReason)
	grant.Action(func(*kingpin.ParseContext) error {
		g.Kind, g.Reason, g.Priority = opt(gKind), opt(gReason), &gPriority
		if gExpires != "" {
			t, err := timeparse.RFC3339("--expires", gExpires)
			if err != nil {
				return err
			}
			g.Expires = &t
		}
		return c.Call("", func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.PostV1TenantsTenantCreditGrants(ctx, bTenant, g)
		})
	})
}

// client calls the exporter through the shared API client (the generated usageapi).
type client struct{ apiclient.Client }

// opt is an optional string parameter: nil when empty.
func opt(s string) *string { return apiclient.Opt[string](s) }
