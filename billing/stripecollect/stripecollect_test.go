package stripecollect_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing/internal/stripemock"
	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/billing/stripecollect"
)

const catalogue = `
currency: USD
grace_period: 72h
collection: manual
stripe: {collection_method: %s}
customers:
  acme: {name: Acme Corp, email: ap@acme.example, address: ["42 Harbour Road", "Bristol"], collection: stripe}
  beta: {name: Beta Ltd}
plans:
  - name: pro
    base_fee: "10.00"
    charges:
      - {meter: calls, model: per_unit, unit_price: "0.01", included: 100}
`

var oct = rating.Period{Year: 2026, Month: time.October}

// world is a billing service on a Pebble directory that survives a simulated crash: reopen
// closes the DB and opens a new service and collector on the same files.
type world struct {
	t     *testing.T
	dir   string
	cat   pricing.Catalogue
	usage *usagetest.Usage
	db    *pebble.DB
	svc   *invoice.Service
	col   *stripecollect.Collector
	rec   *stripemock.Recorder
	now   time.Time
	mu    sync.Mutex
}

func parseCatalogue(t testing.TB, method string) pricing.Catalogue {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(strings.Replace(catalogue, "%s", method, 1)), &n); err != nil {
		t.Fatal(err)
	}
	c, err := pricing.ParseConfig(&n)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newWorld(t *testing.T, method string) *world {
	w := &world{t: t, dir: t.TempDir(), cat: parseCatalogue(t, method), usage: usagetest.New(),
		now: time.Date(2026, time.November, 10, 0, 0, 0, 0, time.UTC)}
	w.rec = stripemock.NewRecorder(t, stripemock.Start(t))
	w.open()
	t.Cleanup(func() { _ = w.db.Close() })
	return w
}

func (w *world) open() {
	t := w.t
	db, err := pebble.Open(w.dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.db = db
	w.svc, err = invoice.New(invoice.Options{DB: db, Catalogue: w.cat, Usage: w.usage,
		Now: func() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.now }})
	if err != nil {
		t.Fatal(err)
	}
	settings := w.cat.Stripe
	settings.APIBase = w.rec.URL
	noRetry := int64(0) // a lost answer must surface as an error, not be retried inside stripe-go
	w.col, err = stripecollect.New(stripecollect.Options{Store: w.svc, APIKey: "sk_test_123", Settings: settings, MaxNetworkRetries: &noRetry})
	if err != nil {
		t.Fatal(err)
	}
}

// crash closes the DB and opens everything again on the same files, as a restarted process would.
func (w *world) crash() {
	if err := w.db.Close(); err != nil {
		w.t.Fatal(err)
	}
	w.open()
}

func (w *world) finalizeOctober() *invoice.Invoice {
	t := w.t
	w.usage.Add("acme", "calls", time.Date(2026, time.October, 5, 0, 0, 0, 0, time.UTC), 1234)
	w.usage.Add("beta", "calls", time.Date(2026, time.October, 6, 0, 0, 0, 0, time.UTC), 500)
	res, err := w.svc.Run(context.Background(), oct)
	if err != nil {
		t.Fatal(err)
	}
	if res.Finalized != 2 {
		t.Fatalf("finalized %d invoices, want 2: %+v", res.Finalized, res)
	}
	invs, err := w.svc.List(context.Background(), invoice.Filter{Tenant: "acme"})
	if err != nil || len(invs) != 1 {
		t.Fatalf("acme's invoices: %v, %v", invs, err)
	}
	if invs[0].Collection == nil || invs[0].Collection.Status != invoice.CollectQueued {
		t.Fatalf("acme's invoice is not queued for Stripe: %+v", invs[0].Collection)
	}
	beta, err := w.svc.List(context.Background(), invoice.Filter{Tenant: "beta"})
	if err != nil || len(beta) != 1 || beta[0].Collection != nil {
		t.Fatalf("beta (manual collection) must not be queued: %+v, %v", beta, err)
	}
	return invs[0]
}

func mutating(reqs []stripemock.Request) []stripemock.Request {
	var out []stripemock.Request
	for _, r := range reqs {
		if r.Method == "POST" {
			out = append(out, r)
		}
	}
	return out
}

func paths(reqs []stripemock.Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func TestCollectSendsTheInvoiceWithItsLinesOnce(t *testing.T) {
	w := newWorld(t, "send_invoice")
	inv := w.finalizeOctober()
	res, err := w.col.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 1 || res.Failed != 0 || res.Queued != 1 {
		t.Fatalf("collect: %+v", res)
	}
	reqs := w.rec.Requests()
	if int64(len(reqs)) != res.Calls {
		t.Errorf("the collector counted %d calls, the proxy saw %d", res.Calls, len(reqs))
	}
	want := []string{"POST /v1/customers", "POST /v1/invoices", "POST /v1/invoices/*/add_lines", "POST /v1/invoices/*/finalize", "POST /v1/invoices/*/send"}
	got := paths(reqs)
	if len(got) != len(want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	for i := range want {
		pre, post, _ := strings.Cut(want[i], "*")
		if !strings.HasPrefix(got[i], pre) || !strings.HasSuffix(got[i], post) {
			t.Errorf("request %d is %q, want %q", i, got[i], want[i])
		}
		if key := reqs[i].IdempotencyKey; !strings.HasPrefix(key, "usagemeter-"+inv.Number+"-") {
			t.Errorf("request %q has idempotency key %q, want one derived from %s", got[i], key, inv.Number)
		}
	}
	create := reqs[1].Form
	if create.Get("metadata[invoice_number]") != inv.Number || create.Get("metadata[tenant]") != "acme" || create.Get("currency") != "usd" ||
		create.Get("collection_method") != "send_invoice" || create.Get("days_until_due") != "14" {
		t.Errorf("invoice create form: %v", create)
	}
	if f := reqs[0].Form; f.Get("name") != "Acme Corp" || f.Get("email") != "ap@acme.example" || f.Get("address[line1]") != "42 Harbour Road" {
		t.Errorf("customer form: %v", f)
	}
	// The lines sent add up to what our invoice asks to be paid, to the cent.
	var sum int64
	lines := reqs[2].Form
	for i := 0; ; i++ {
		v := lines.Get("lines[" + strconv.Itoa(i) + "][amount]")
		if v == "" {
			break
		}
		a, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += a
		if lines.Get("lines["+strconv.Itoa(i)+"][metadata][invoice_number]") != inv.Number {
			t.Errorf("line %d lacks our number: %v", i, lines)
		}
	}
	if sum != int64(inv.AmountDue) || sum != 1000+1134 {
		t.Errorf("lines sent sum to %d, the invoice is due %d (want 2134)", sum, inv.AmountDue)
	}

	got2, err := w.svc.Get(context.Background(), inv.Number)
	if err != nil {
		t.Fatal(err)
	}
	c := got2.Collection
	if c == nil || c.Status != invoice.CollectSent || !strings.HasPrefix(c.Customer, "cus_") || !strings.HasPrefix(c.Invoice, "in_") || c.SentAt == nil || c.Attempts != 1 {
		t.Fatalf("stored collection: %+v", c)
	}
	if got2.Status != invoice.Finalized || got2.AmountRemaining != inv.AmountDue {
		t.Errorf("sending changed our invoice: %+v", got2)
	}

	// Nothing is queued any more: a second run makes no call at all.
	w.rec.Reset()
	res, err = w.col.Collect(context.Background())
	if err != nil || res.Queued != 0 || res.Calls != 0 || len(w.rec.Requests()) != 0 {
		t.Fatalf("second collect: %+v %v, requests %v", res, err, paths(w.rec.Requests()))
	}
}

// TestCrashAfterStripeCreatedTheInvoice: Stripe creates the invoice, the answer is lost (the
// process dies before recording the id). The restarted collector looks for the invoice by our
// number, then creates it with the same idempotency key as the first attempt, so Stripe hands
// back the first invoice: one Stripe invoice, one charge.
func TestCrashAfterStripeCreatedTheInvoice(t *testing.T) {
	for _, method := range []string{"send_invoice", "charge_automatically"} {
		t.Run(method, func(t *testing.T) {
			w := newWorld(t, method)
			inv := w.finalizeOctober()
			w.rec.DropAfter(func(r stripemock.Request) bool { return r.Method == "POST" && r.Path == "/v1/invoices" })
			res, err := w.col.Collect(context.Background())
			if err != nil || res.Failed != 1 || res.Sent != 0 {
				t.Fatalf("first collect: %+v %v", res, err)
			}
			first := mutating(w.rec.Requests())
			c, err := w.svc.Collection(context.Background(), inv.Number)
			if err != nil || c.Status != invoice.CollectStarted || c.Invoice != "" {
				t.Fatalf("after the lost answer: %+v %v", c, err)
			}

			w.rec.DropAfter(nil)
			w.crash()
			w.rec.Reset()
			res, err = w.col.Collect(context.Background())
			if err != nil || res.Sent != 1 {
				t.Fatalf("collect after restart: %+v %v", res, err)
			}
			second := w.rec.Requests()
			// The restarted collector looks for the invoice by our number before anything else
			// (the customer is recorded, so it is not created again).
			if second[0].Method != "GET" || second[0].Path != "/v1/invoices" {
				t.Fatalf("the restarted collector did not look for the invoice first: %v", paths(second))
			}
			creates := map[bool]int{}
			for i, r := range mutating(append(first, second...)) {
				if r.Path == "/v1/invoices" {
					creates[i >= len(first)]++
					if r.IdempotencyKey != "usagemeter-"+inv.Number+"-invoice" {
						t.Errorf("invoice create with key %q", r.IdempotencyKey)
					}
				}
			}
			// stripe-mock remembers nothing, so the lookup finds nothing and the create is sent
			// again; with the first attempt's key, so Stripe returns the first invoice.
			if creates[false] < 1 || creates[true] != 1 {
				t.Errorf("invoice creates: first attempt %d, retry %d; want >= 1 and 1, all with one key", creates[false], creates[true])
			}
			// No request of the retry carries a key the first attempt did not already use,
			// except the steps the first attempt never reached.
			used := map[string]string{}
			for _, r := range first {
				used[r.IdempotencyKey] = r.Path
			}
			for _, r := range mutating(second) {
				if r.IdempotencyKey == "" {
					t.Errorf("%s %s without an idempotency key", r.Method, r.Path)
				}
				if _, ok := used[r.IdempotencyKey]; !ok && (r.Path == "/v1/customers" || r.Path == "/v1/invoices") {
					t.Errorf("the retry created with a new key: %s %s %s", r.Method, r.Path, r.IdempotencyKey)
				}
			}
			charge := 0
			for _, r := range mutating(second) {
				if strings.HasSuffix(r.Path, "/pay") || strings.HasSuffix(r.Path, "/send") {
					charge++
				}
			}
			if charge != 1 {
				t.Errorf("the invoice was sent or charged %d times, want once: %v", charge, paths(second))
			}
			c, _ = w.svc.Collection(context.Background(), inv.Number)
			if c.Status != invoice.CollectSent || c.Attempts != 2 || c.Invoice == "" {
				t.Errorf("collection after the retry: %+v", c)
			}
		})
	}
}

// TestCrashAfterTheChargeWasRequested: the id is recorded, then the answer to the charge (or
// send) is lost. The retry never creates a Stripe invoice again (our record holds its id), and
// every request it repeats carries the key of the first attempt's request.
func TestCrashAfterTheChargeWasRequested(t *testing.T) {
	for _, method := range []string{"send_invoice", "charge_automatically"} {
		t.Run(method, func(t *testing.T) {
			w := newWorld(t, method)
			inv := w.finalizeOctober()
			last := "/send"
			if method == "charge_automatically" {
				last = "/pay"
			}
			w.rec.DropAfter(func(r stripemock.Request) bool { return strings.HasSuffix(r.Path, last) })
			if res, err := w.col.Collect(context.Background()); err != nil || res.Failed != 1 {
				t.Fatalf("first collect: %+v %v", res, err)
			}
			first := mutating(w.rec.Requests())
			c, _ := w.svc.Collection(context.Background(), inv.Number)
			if c.Status != invoice.CollectCreated || c.Invoice == "" {
				t.Fatalf("after the lost answer: %+v", c)
			}
			w.rec.DropAfter(nil)
			w.crash()
			w.rec.Reset()
			if res, err := w.col.Collect(context.Background()); err != nil || res.Sent != 1 {
				t.Fatalf("collect after restart: %+v %v", res, err)
			}
			keys := map[string]bool{}
			for _, r := range first {
				keys[r.IdempotencyKey] = true
			}
			for _, r := range w.rec.Requests() {
				if r.Method == "POST" && r.Path == "/v1/invoices" || r.Path == "/v1/customers" {
					t.Errorf("the retry sent %s %s although the Stripe invoice is recorded", r.Method, r.Path)
				}
				if r.Method == "POST" && !keys[r.IdempotencyKey] {
					t.Errorf("the retry sent %s %s with a key the first attempt did not use: %q", r.Method, r.Path, r.IdempotencyKey)
				}
			}
			if c2, _ := w.svc.Collection(context.Background(), inv.Number); c2.Invoice != c.Invoice || c2.Status != invoice.CollectSent {
				t.Errorf("the Stripe invoice id changed or was not marked sent: %+v -> %+v", c, c2)
			}
		})
	}
}

func TestPaidOrVoidedBeforeSendingIsNotSent(t *testing.T) {
	w := newWorld(t, "send_invoice")
	inv := w.finalizeOctober()
	if _, err := w.svc.RecordPayment(context.Background(), invoice.PaymentInput{Invoice: inv.Number, Amount: inv.AmountDue}); err != nil {
		t.Fatal(err)
	}
	res, err := w.col.Collect(context.Background())
	if err != nil || res.Skipped != 1 || res.Calls != 0 {
		t.Fatalf("collect: %+v %v", res, err)
	}
	c, _ := w.svc.Collection(context.Background(), inv.Number)
	if c.Status != invoice.CollectSkipped {
		t.Errorf("collection: %+v", c)
	}
	if q, _ := w.svc.CollectionQueue(context.Background()); len(q) != 0 {
		t.Errorf("still queued: %v", q)
	}
}

// TestSettledHereAfterSendingIsClosedAtStripe: an invoice sent to Stripe and then voided (or
// paid by bank transfer) here goes back on the queue, and the next run closes it at Stripe, so
// the customer is not asked to pay it there.
func TestSettledHereAfterSendingIsClosedAtStripe(t *testing.T) {
	for _, how := range []string{"void", "bank_transfer"} {
		t.Run(how, func(t *testing.T) {
			w := newWorld(t, "send_invoice")
			inv := w.finalizeOctober()
			if res, err := w.col.Collect(context.Background()); err != nil || res.Sent != 1 {
				t.Fatalf("collect: %+v %v", res, err)
			}
			var err error
			if how == "void" {
				_, err = w.svc.Void(context.Background(), inv.Number, "test")
			} else {
				_, err = w.svc.RecordPayment(context.Background(), invoice.PaymentInput{Invoice: inv.Number, Amount: inv.AmountDue, Method: how})
			}
			if err != nil {
				t.Fatal(err)
			}
			if q, _ := w.svc.CollectionQueue(context.Background()); len(q) != 1 {
				t.Fatalf("not queued again: %v", q)
			}
			w.rec.Reset()
			if res, err := w.col.Collect(context.Background()); err != nil || res.Skipped != 1 || res.Failed != 0 {
				t.Fatalf("collect: %+v %v", res, err)
			}
			c, _ := w.svc.Collection(context.Background(), inv.Number)
			reqs := w.rec.Requests()
			if len(reqs) != 2 || reqs[0].Method != "GET" || reqs[0].Path != "/v1/invoices/"+c.Invoice {
				t.Fatalf("requests %v", paths(reqs))
			}
			// stripe-mock answers the read with a fixture whose status decides the call.
			closing := reqs[1].Method + " " + strings.TrimPrefix(reqs[1].Path, "/v1/invoices/"+c.Invoice)
			if closing != "DELETE " && closing != "POST /void" && closing != "POST /pay" {
				t.Errorf("closing call %q", closing)
			}
			if c.Status != invoice.CollectClosed {
				t.Errorf("collection: %+v", c)
			}
			if q, _ := w.svc.CollectionQueue(context.Background()); len(q) != 0 {
				t.Errorf("still queued: %v", q)
			}
		})
	}
}
