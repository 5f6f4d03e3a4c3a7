// Package stripecollect sends finalized invoices to Stripe for collection.
//
// Mapping. One of our invoices is one Stripe invoice: the Stripe customer is created (or
// updated when the buyer's details changed) for the tenant; a draft Stripe invoice is created
// with our number in its metadata (invoice_number, tenant), our lines are added to it as
// one-off lines with their rounded amounts (add_lines, 50 per request), prepaid credit drawn
// down at finalization is one negative line and credit grants another, so Stripe's total is
// our amount_due; the invoice
// is then finalized and sent (collection_method send_invoice) or charged
// (charge_automatically). Our invoice stays the source of truth: Stripe only collects, and
// payments come back through the webhooks (package stripehook), which match our number in the
// metadata.
//
// Exactly one charge. Every request that creates or changes something at Stripe carries an
// idempotency key derived from our invoice number and the step ("usagemeter-INV-00000042-invoice"),
// so a request retried after a crash returns the object the first one created instead of
// creating a second. Our progress is recorded, synced, at three points: the attempt started,
// the Stripe invoice exists (its id), and the invoice was sent (which also takes it off the
// queue). A retry resumes from what is recorded: it never creates a Stripe invoice once one
// is recorded, and when an attempt started but recorded no id (a crash between Stripe's answer
// and our write), it first looks for a Stripe invoice of the customer carrying our number
// before creating one with the same idempotency key. Stripe keeps idempotency keys for 24
// hours; the lookup covers a retry after that. Finalizing and sending (or paying) a Stripe
// invoice twice is refused by Stripe itself, so those steps cannot charge twice either.
package stripecollect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v82"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/stripehook"
)

// Provider is the collection provider this package implements.
const Provider = pricing.CollectStripe

// maxLinesPerRequest is how many lines one add_lines request carries (Stripe's limit is 50).
const maxLinesPerRequest = 50

// Store is the part of invoice.Service the collector needs.
type Store interface {
	Get(ctx context.Context, id string) (*invoice.Invoice, error)
	Collection(ctx context.Context, number string) (*invoice.Collection, error)
	PutCollection(ctx context.Context, number string, c *invoice.Collection, done bool) error
	CollectionQueue(ctx context.Context) ([]string, error)
	ProviderCustomer(ctx context.Context, provider, tenant string) (id, fingerprint string, err error)
	SetProviderCustomer(ctx context.Context, provider, tenant, id, fingerprint string) error
	Catalogue() pricing.Catalogue
}

// Collector sends queued invoices to Stripe. It is safe for concurrent use; Collect runs are
// serialized so that two runs never work on the same invoice at once.
type Collector struct {
	store    Store
	client   *stripe.Client
	settings pricing.StripeSettings
	log      *slog.Logger
	calls    atomic.Int64
	run      sync.Mutex
	tenantMu sync.Map // tenant → *sync.Mutex: one customer creation per tenant at a time
}

// Options configure a Collector.
type Options struct {
	Store    Store
	APIKey   string
	Settings pricing.StripeSettings
	// HTTPClient carries the requests (nil: a client with a 60 s timeout).
	HTTPClient *http.Client
	// MaxNetworkRetries is stripe-go's retry count for network errors and 409/429/5xx answers,
	// each retry with the same idempotency key (nil: stripe-go's default).
	MaxNetworkRetries *int64
	Logger            *slog.Logger
}

// New builds a Collector.
func New(o Options) (*Collector, error) {
	if o.Store == nil {
		return nil, errors.New("stripecollect: Store is required")
	}
	if o.APIKey == "" {
		return nil, errors.New("stripecollect: no Stripe API key (set the variable billing.stripe.api_key_env names, default STRIPE_API_KEY)")
	}
	c := &Collector{store: o.Store, settings: o.Settings, log: o.Logger}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.settings.CollectionMethod == "" {
		c.settings.CollectionMethod = pricing.StripeSendInvoice
	}
	if c.settings.Concurrency <= 0 {
		c.settings.Concurrency = 4
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	counted := *hc
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	counted.Transport = countingTransport{base: base, n: &c.calls}
	cfg := &stripe.BackendConfig{HTTPClient: &counted, MaxNetworkRetries: o.MaxNetworkRetries,
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelError}}
	if o.Settings.APIBase != "" {
		cfg.URL = stripe.String(o.Settings.APIBase)
	}
	c.client = stripe.NewClient(o.APIKey, stripe.WithBackends(stripe.NewBackendsWithConfig(cfg)))
	return c, nil
}

type countingTransport struct {
	base http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.base.RoundTrip(r)
}

// Calls is the number of HTTP requests made to Stripe so far.
func (c *Collector) Calls() int64 { return c.calls.Load() }

// Result reports a collection run.
type Result struct {
	Queued  int   `json:"queued"`  // invoices on the queue when the run started
	Sent    int   `json:"sent"`    // sent (or charged) at Stripe by this run
	Skipped int   `json:"skipped"` // settled or voided here before being sent: taken off the queue
	Failed  int   `json:"failed"`  // left on the queue for the next run (see the invoice's collection.last_error)
	Calls   int64 `json:"calls"`   // HTTP requests made to Stripe
	// Errors holds the first few failures, "INV-...: reason".
	Errors []string `json:"errors,omitempty"`
}

// Collect sends every queued invoice, Settings.Concurrency at a time. A failure leaves the
// invoice queued with its error recorded; the run goes on with the others.
func (c *Collector) Collect(ctx context.Context) (Result, error) {
	c.run.Lock()
	defer c.run.Unlock()
	start := c.calls.Load()
	nums, err := c.store.CollectionQueue(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("stripe collection: read the queue: %w", err)
	}
	res := Result{Queued: len(nums)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan string)
	for w := 0; w < c.settings.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range next {
				sent, err := c.CollectOne(ctx, n)
				mu.Lock()
				switch {
				case err != nil:
					res.Failed++
					if len(res.Errors) < 10 {
						res.Errors = append(res.Errors, n+": "+err.Error())
					}
				case sent:
					res.Sent++
				default:
					res.Skipped++
				}
				mu.Unlock()
			}
		}()
	}
	for _, n := range nums {
		if ctx.Err() != nil {
			break
		}
		next <- n
	}
	close(next)
	wg.Wait()
	res.Calls = c.calls.Load() - start
	c.log.Info("stripe collection", "queued", res.Queued, "sent", res.Sent, "skipped", res.Skipped, "failed", res.Failed, "calls", res.Calls)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("stripe collection: %w", err)
	}
	return res, nil
}

// idemKey is the idempotency key of one step of one invoice.
func idemKey(number, step string) string { return "usagemeter-" + number + "-" + step }

// CollectOne sends one queued invoice. It reports false (and takes the invoice off the queue)
// when the invoice no longer needs collecting: paid or voided here before it was sent.
func (c *Collector) CollectOne(ctx context.Context, number string) (sent bool, err error) {
	inv, err := c.store.Get(ctx, number)
	if err != nil {
		return false, err
	}
	coll := inv.Collection
	if coll == nil {
		coll = &invoice.Collection{Provider: Provider, Status: invoice.CollectQueued}
	}
	if inv.Status != invoice.Finalized && coll.Invoice != "" && coll.Status != invoice.CollectClosed {
		// Settled or voided here while Stripe collects it: close it there, so that the customer
		// is not asked to pay it again.
		if err := c.close(ctx, inv, coll); err != nil {
			coll.LastError = err.Error()
			return false, errors.Join(err, c.store.PutCollection(ctx, number, coll, false))
		}
		coll.Status, coll.LastError = invoice.CollectClosed, ""
		return false, c.store.PutCollection(ctx, number, coll, true)
	}
	if coll.Status == invoice.CollectSent || coll.Status == invoice.CollectClosed {
		return false, c.store.PutCollection(ctx, number, coll, true) // recorded, but still queued: unqueue
	}
	if inv.Status != invoice.Finalized && coll.Invoice == "" {
		coll.Status = invoice.CollectSkipped
		coll.LastError = "invoice is " + string(inv.Status) + " before it was sent"
		return false, c.store.PutCollection(ctx, number, coll, true)
	}
	resumed := coll.Status == invoice.CollectStarted || coll.Status == invoice.CollectCreated
	coll.Attempts++
	if coll.Status == invoice.CollectQueued {
		coll.Status = invoice.CollectStarted
	}
	if err := c.store.PutCollection(ctx, number, coll, false); err != nil {
		return false, err
	}
	if err := c.send(ctx, inv, coll, resumed); err != nil {
		coll.LastError = err.Error()
		if perr := c.store.PutCollection(ctx, number, coll, false); perr != nil {
			return false, errors.Join(err, perr)
		}
		return false, err
	}
	now := time.Now().UTC()
	coll.Status, coll.LastError, coll.SentAt = invoice.CollectSent, "", &now
	if err := c.store.PutCollection(ctx, number, coll, true); err != nil {
		return false, err
	}
	return true, nil
}

func (c *Collector) send(ctx context.Context, inv *invoice.Invoice, coll *invoice.Collection, resumed bool) error {
	n := inv.Number
	if inv.Currency.Exponent == 3 {
		// Stripe takes three-decimal currencies (KWD, BHD, ...) in thousandths that must end in 0.
		for _, l := range inv.Lines {
			if l.Amount%10 != 0 {
				return fmt.Errorf("line %q: %d thousandths of %s: Stripe accepts only multiples of 10; collect this invoice manually", l.Description, l.Amount, inv.Currency.Code)
			}
		}
	}
	cust, err := c.customer(ctx, inv)
	if err != nil {
		return err
	}
	coll.Customer = cust
	var si *stripe.Invoice
	if coll.Invoice == "" && resumed {
		// An earlier attempt may have created the Stripe invoice and crashed before recording
		// its id: find it by our number rather than rely on the idempotency key alone.
		if si, err = c.findInvoice(ctx, cust, n); err != nil {
			return err
		}
	}
	if coll.Invoice == "" && si == nil {
		p := &stripe.InvoiceCreateParams{
			Customer:                    stripe.String(cust),
			Currency:                    stripe.String(strings.ToLower(inv.Currency.Code)),
			CollectionMethod:            stripe.String(c.settings.CollectionMethod),
			AutoAdvance:                 stripe.Bool(false),
			PendingInvoiceItemsBehavior: stripe.String("exclude"),
			Description:                 stripe.String(fmt.Sprintf("%s, %s (%s)", n, inv.Period, inv.Tenant)),
			Metadata:                    map[string]string{stripehook.MetadataInvoice: n, stripehook.MetadataTenant: inv.Tenant},
		}
		if c.settings.CollectionMethod == pricing.StripeSendInvoice {
			days := int64(1)
			if inv.DueAt != nil && inv.FinalizedAt != nil {
				days = max(1, int64(inv.DueAt.Sub(*inv.FinalizedAt).Hours()/24))
			}
			p.DaysUntilDue = stripe.Int64(days)
		}
		p.SetIdempotencyKey(idemKey(n, "invoice"))
		if si, err = c.client.V1Invoices.Create(ctx, p); err != nil {
			return fmt.Errorf("create the Stripe invoice: %w", err)
		}
		resumed = false // a fresh draft: no lines yet
	}
	if si != nil {
		coll.Invoice, coll.Status = si.ID, invoice.CollectCreated
		if err := c.store.PutCollection(ctx, n, coll, false); err != nil {
			return err
		}
	}
	if si == nil || resumed {
		// Resuming: Stripe knows how far the last attempt got.
		if si, err = c.client.V1Invoices.Retrieve(ctx, coll.Invoice, nil); err != nil {
			return fmt.Errorf("read the Stripe invoice %s: %w", coll.Invoice, err)
		}
	}
	if si.Status == "" || si.Status == stripe.InvoiceStatusDraft {
		if !hasOurLines(si, n) {
			if err := c.addLines(ctx, inv, coll.Invoice); err != nil {
				return err
			}
		}
		fp := &stripe.InvoiceFinalizeInvoiceParams{AutoAdvance: stripe.Bool(false)}
		fp.SetIdempotencyKey(idemKey(n, "finalize"))
		if si, err = c.client.V1Invoices.FinalizeInvoice(ctx, coll.Invoice, fp); err != nil {
			return fmt.Errorf("finalize the Stripe invoice %s: %w", coll.Invoice, err)
		}
	}
	coll.ProviderNumber, coll.HostedURL = si.Number, si.HostedInvoiceURL
	switch si.Status {
	case stripe.InvoiceStatusPaid, stripe.InvoiceStatusVoid, stripe.InvoiceStatusUncollectible:
		return nil // nothing left to send; the webhooks report the outcome
	}
	if c.settings.CollectionMethod == pricing.StripeChargeAutomatically {
		pp := &stripe.InvoicePayParams{}
		pp.SetIdempotencyKey(idemKey(n, "pay"))
		if _, err := c.client.V1Invoices.Pay(ctx, coll.Invoice, pp); err != nil {
			var se *stripe.Error
			if errors.As(err, &se) && se.Type == stripe.ErrorTypeCard {
				// A declined card is a failed payment, not a failed send: dunning takes over.
				coll.PaymentFailures++
				return nil
			}
			return fmt.Errorf("pay the Stripe invoice %s: %w", coll.Invoice, err)
		}
		return nil
	}
	sp := &stripe.InvoiceSendInvoiceParams{}
	sp.SetIdempotencyKey(idemKey(n, "send"))
	if _, err := c.client.V1Invoices.SendInvoice(ctx, coll.Invoice, sp); err != nil {
		return fmt.Errorf("send the Stripe invoice %s: %w", coll.Invoice, err)
	}
	return nil
}

// close ends a Stripe invoice that our invoice no longer needs collected: a draft is deleted,
// an open invoice is voided (ours was voided) or marked paid out of band (ours was paid or
// credited here), and a paid, void or uncollectible one is left as it is.
func (c *Collector) close(ctx context.Context, inv *invoice.Invoice, coll *invoice.Collection) error {
	si, err := c.client.V1Invoices.Retrieve(ctx, coll.Invoice, nil)
	if err != nil {
		return fmt.Errorf("read the Stripe invoice %s: %w", coll.Invoice, err)
	}
	switch si.Status {
	case stripe.InvoiceStatusDraft:
		if _, err := c.client.V1Invoices.Delete(ctx, coll.Invoice, nil); err != nil {
			return fmt.Errorf("delete the Stripe draft %s: %w", coll.Invoice, err)
		}
	case stripe.InvoiceStatusOpen:
		if inv.Status == invoice.Void {
			p := &stripe.InvoiceVoidInvoiceParams{}
			p.SetIdempotencyKey(idemKey(inv.Number, "void"))
			if _, err := c.client.V1Invoices.VoidInvoice(ctx, coll.Invoice, p); err != nil {
				return fmt.Errorf("void the Stripe invoice %s: %w", coll.Invoice, err)
			}
			return nil
		}
		p := &stripe.InvoicePayParams{PaidOutOfBand: stripe.Bool(true)}
		p.SetIdempotencyKey(idemKey(inv.Number, "paid-out-of-band"))
		if _, err := c.client.V1Invoices.Pay(ctx, coll.Invoice, p); err != nil {
			return fmt.Errorf("mark the Stripe invoice %s paid out of band: %w", coll.Invoice, err)
		}
	}
	return nil
}

// hasOurLines reports whether a Stripe invoice already carries the lines of our invoice.
func hasOurLines(si *stripe.Invoice, number string) bool {
	if si.Lines == nil {
		return false
	}
	for _, l := range si.Lines.Data {
		if l.Metadata[stripehook.MetadataInvoice] == number {
			return true
		}
	}
	return false
}

// addLines puts our lines on the Stripe invoice: one line per non-zero line of ours with its
// rounded amount, and the prepaid credit drawn down as one negative line.
func (c *Collector) addLines(ctx context.Context, inv *invoice.Invoice, id string) error {
	var lines []*stripe.InvoiceAddLinesLineParams
	meta := func(k string) map[string]string {
		return map[string]string{stripehook.MetadataInvoice: inv.Number, "line": k}
	}
	for _, l := range inv.Lines {
		if l.Amount == 0 {
			continue
		}
		lines = append(lines, &stripe.InvoiceAddLinesLineParams{Amount: stripe.Int64(int64(l.Amount)),
			Description: stripe.String(l.Description), Metadata: meta(l.Key)})
	}
	for _, t := range inv.Taxes {
		if !t.Inclusive && t.Amount != 0 {
			lines = append(lines, &stripe.InvoiceAddLinesLineParams{Amount: stripe.Int64(int64(t.Amount)),
				Description: stripe.String(fmt.Sprintf("%s %s%% (%s)", t.Name, t.Rate, t.Jurisdiction)), Metadata: meta("tax:" + t.Jurisdiction)})
		}
	}
	if inv.GrantsApplied > 0 {
		lines = append(lines, &stripe.InvoiceAddLinesLineParams{Amount: stripe.Int64(-int64(inv.GrantsApplied)),
			Description: stripe.String("Credit grants applied"), Metadata: meta("grants_applied")})
	}
	if inv.CreditApplied > 0 {
		lines = append(lines, &stripe.InvoiceAddLinesLineParams{Amount: stripe.Int64(-int64(inv.CreditApplied)),
			Description: stripe.String("Prepaid credit applied"), Metadata: meta("credit_applied")})
	}
	for i := 0; i < len(lines); i += maxLinesPerRequest {
		p := &stripe.InvoiceAddLinesParams{Lines: lines[i:min(i+maxLinesPerRequest, len(lines))]}
		p.SetIdempotencyKey(idemKey(inv.Number, fmt.Sprintf("lines-%d", i/maxLinesPerRequest)))
		if _, err := c.client.V1Invoices.AddLines(ctx, id, p); err != nil {
			return fmt.Errorf("add lines %d.. to the Stripe invoice %s: %w", i, id, err)
		}
	}
	return nil
}

// findInvoice looks for a Stripe invoice of the customer that carries our number.
func (c *Collector) findInvoice(ctx context.Context, customer, number string) (*stripe.Invoice, error) {
	p := &stripe.InvoiceListParams{Customer: stripe.String(customer)}
	p.Limit = stripe.Int64(100)
	seen := 0
	for si, err := range c.client.V1Invoices.List(ctx, p) {
		if err != nil {
			return nil, fmt.Errorf("look for the Stripe invoice of %s: %w", number, err)
		}
		if si.Metadata[stripehook.MetadataInvoice] == number {
			return si, nil
		}
		if seen++; seen >= 1000 {
			break // invoices come newest first; ours is among the customer's recent ones
		}
	}
	return nil, nil
}

// customer returns the tenant's Stripe customer: the recorded one (updated when the buyer's
// details changed since they were sent), or a new one.
func (c *Collector) customer(ctx context.Context, inv *invoice.Invoice) (string, error) {
	mu, _ := c.tenantMu.LoadOrStore(inv.Tenant, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	buyer := inv.Buyer
	fp := fingerprint(buyer)
	id, old, err := c.store.ProviderCustomer(ctx, Provider, inv.Tenant)
	if err != nil {
		return "", err
	}
	if id != "" && old == fp {
		return id, nil
	}
	meta := map[string]string{stripehook.MetadataTenant: inv.Tenant}
	if id != "" {
		p := &stripe.CustomerUpdateParams{Name: stripe.String(buyer.Name), Metadata: meta, Address: address(buyer.Address)}
		if buyer.Email != "" {
			p.Email = stripe.String(buyer.Email)
		}
		p.SetIdempotencyKey(idemKey(inv.Number, "customer-update"))
		if _, err := c.client.V1Customers.Update(ctx, id, p); err != nil {
			return "", fmt.Errorf("update the Stripe customer %s: %w", id, err)
		}
	} else {
		p := &stripe.CustomerCreateParams{Name: stripe.String(buyer.Name), Metadata: meta, Address: address(buyer.Address)}
		if buyer.Email != "" {
			p.Email = stripe.String(buyer.Email)
		}
		p.SetIdempotencyKey(idemKey(inv.Number, "customer"))
		cu, err := c.client.V1Customers.Create(ctx, p)
		if err != nil {
			return "", fmt.Errorf("create the Stripe customer of %s: %w", inv.Tenant, err)
		}
		id = cu.ID
	}
	if err := c.store.SetProviderCustomer(ctx, Provider, inv.Tenant, id, fp); err != nil {
		return "", err
	}
	return id, nil
}

func address(lines []string) *stripe.AddressParams {
	if len(lines) == 0 {
		return nil
	}
	a := &stripe.AddressParams{Line1: stripe.String(lines[0])}
	if len(lines) > 1 {
		a.Line2 = stripe.String(strings.Join(lines[1:], ", "))
	}
	return a
}

// fingerprint identifies the buyer details sent to Stripe, so that they are sent again only
// when they change.
func fingerprint(p pricing.Party) string {
	h := sha256.New()
	for _, s := range append([]string{p.Name, p.Email, p.TaxID}, p.Address...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// Retry is a dunning step on an invoice sent to Stripe: with charge_automatically the payment
// is attempted again, with send_invoice the invoice is e-mailed again. Its idempotency key
// names the step, so a step retried after a crash acts once. It returns the action taken.
func (c *Collector) Retry(ctx context.Context, inv *invoice.Invoice, step int) (string, error) {
	coll := inv.Collection
	if coll == nil || coll.Invoice == "" || coll.Status != invoice.CollectSent {
		return "", fmt.Errorf("%s has not been sent to Stripe", inv.Number)
	}
	if c.settings.CollectionMethod == pricing.StripeChargeAutomatically {
		p := &stripe.InvoicePayParams{}
		p.SetIdempotencyKey(idemKey(inv.Number, fmt.Sprintf("retry-%d", step)))
		if _, err := c.client.V1Invoices.Pay(ctx, coll.Invoice, p); err != nil {
			var se *stripe.Error
			if errors.As(err, &se) && se.Type == stripe.ErrorTypeCard {
				return "stripe_retry_charge", fmt.Errorf("declined: %s", se.Msg)
			}
			return "stripe_retry_charge", fmt.Errorf("retry the charge of %s: %w", coll.Invoice, err)
		}
		return "stripe_retry_charge", nil
	}
	p := &stripe.InvoiceSendInvoiceParams{}
	p.SetIdempotencyKey(idemKey(inv.Number, fmt.Sprintf("remind-%d", step)))
	if _, err := c.client.V1Invoices.SendInvoice(ctx, coll.Invoice, p); err != nil {
		return "stripe_resend", fmt.Errorf("send %s again: %w", coll.Invoice, err)
	}
	return "stripe_resend", nil
}
