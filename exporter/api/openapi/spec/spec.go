// Package spec builds the OpenAPI 3.1 description of the exporter's whole HTTP API (exporter,
// billing, analytics) from a table of its operations and the Go types its handlers encode, so that
// the schemas are those of the JSON actually sent. `go test ./exporter/api/openapi/spec -update`
// writes it to exporter/api/openapi/openapi.json, which is committed, embedded and served at
// GET /v1/openapi.json; the test fails while the committed file differs from what this builds.
package spec

import (
	"encoding/json"
	"fmt"
	"github.com/usagemeter/usagemeter/billing/stripecollect"
	"github.com/usagemeter/usagemeter/exporter/backup"
	"github.com/usagemeter/usagemeter/notify"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"

	"github.com/usagemeter/usagemeter/analytics"
	"github.com/usagemeter/usagemeter/analytics/insights"
	"github.com/usagemeter/usagemeter/analytics/report"
	"github.com/usagemeter/usagemeter/analytics/stats"
	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/exporter/api"
	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Version is the API's version in the document.
const Version = "1.0.0"

// op is one operation of the table.
type op struct {
	method, path, tag, summary string
	public                     bool // no credentials (probes, the document, signed webhooks)
	params                     []*openapi3.Parameter
	body                       *openapi3.RequestBody
	status                     int // the success status
	// resp is the Go value whose JSON is the success body; a string is a media type of a body
	// that is not JSON (text, CSV, PDF), nil a body-less answer.
	resp        any
	respTypes   []string // other media types of the success body (format=csv, pdf, ...)
	description string
}

func query(name, desc string, required bool, s *openapi3.Schema) *openapi3.Parameter {
	return &openapi3.Parameter{Name: name, In: openapi3.ParameterInQuery, Description: desc, Required: required,
		Schema: openapi3.NewSchemaRef("", s)}
}

func path(name, desc string) *openapi3.Parameter {
	return &openapi3.Parameter{Name: name, In: openapi3.ParameterInPath, Description: desc, Required: true,
		Schema: openapi3.NewSchemaRef("", openapi3.NewStringSchema())}
}

func str() *openapi3.Schema     { return openapi3.NewStringSchema() }
func rfc3339() *openapi3.Schema { return openapi3.NewDateTimeSchema() }
func enum(vals ...string) *openapi3.Schema {
	s := openapi3.NewStringSchema()
	for _, v := range vals {
		s.Enum = append(s.Enum, v)
	}
	return s
}
func integer(lo, hi float64) *openapi3.Schema {
	return openapi3.NewIntegerSchema().WithMin(lo).WithMax(hi)
}

// strings_ is a repeatable query parameter (meter=a&meter=b).
func strings_() *openapi3.Schema {
	return openapi3.NewArraySchema().WithItems(openapi3.NewStringSchema())
}

func month() *openapi3.Schema { return openapi3.NewStringSchema().WithPattern(`^\d{4}-\d{2}$`) }

var (
	tenantQuery = query("tenant", "The tenant. Also what the policies authorize on.", false, str())
	tenantPath  = path("tenant", "The tenant.")
	idPath      = path("id", "The invoice number.")
)

// jsonBody is a request body of a Go type. Its schema requires only the fields listed in fields:
// what the handler refuses to go without (decoders take any field as optional).
type jsonBody struct {
	value    any
	required bool
	desc     string
	fields   []string
}

// ingestBody is POST /v1/events's body: every CloudEvents content mode.
func ingestBody(g *gen) *openapi3.RequestBody {
	event := g.requestRef(cloudEvent{}, "specversion", "id", "source", "type", "data")
	batch := openapi3.NewArraySchema().WithItems(event.Value)
	batch.Items = event
	data := openapi3.NewObjectSchema().WithAnyAdditionalProperties()
	data.Description = "Binary mode: the event's data object; its attributes are the ce-* headers (ce-specversion, ce-id, ce-source, ce-type, ce-time, extensions), percent-decoded."
	text := str()
	text.Description = "One event per line."
	return &openapi3.RequestBody{Required: true,
		Description: "Events in any CloudEvents HTTP content mode. The request is all or nothing.",
		Content: openapi3.Content{
			"application/cloudevents+json":       &openapi3.MediaType{Schema: event},
			"application/cloudevents-batch+json": &openapi3.MediaType{Schema: openapi3.NewSchemaRef("", batch)},
			"application/json": &openapi3.MediaType{Schema: openapi3.NewSchemaRef("", &openapi3.Schema{
				Description: "An array of events, one event, or (binary mode, with ce-specversion) the data of one event.",
				OneOf:       openapi3.SchemaRefs{openapi3.NewSchemaRef("", batch), openapi3.NewSchemaRef("", data)}})},
			"application/x-ndjson": &openapi3.MediaType{Schema: openapi3.NewSchemaRef("", text)},
		}}
}

// cloudEvent is a structured-mode CloudEvent as the contract defines it.
type cloudEvent struct {
	Specversion     string         `json:"specversion"`
	ID              string         `json:"id"`
	Source          string         `json:"source"`
	Type            string         `json:"type"`
	Time            *time.Time     `json:"time,omitempty"`
	Datacontenttype string         `json:"datacontenttype,omitempty"`
	Data            map[string]any `json:"data"`
}

// The bodies that handlers encode from maps or unexported types, as types.
type (
	metersResponse struct {
		Meters []meter.Def `json:"meters"`
	}
	auditResponse struct {
		Entries []audit.Entry `json:"entries"`
		Next    string        `json:"next,omitempty"`
	}
	reloadResponse struct {
		Status string `json:"status"`
	}
	invoiceSummary struct {
		ID              string         `json:"id"`
		Number          string         `json:"number"`
		Tenant          string         `json:"tenant"`
		Period          rating.Period  `json:"period"`
		Status          invoice.Status `json:"status"`
		Currency        string         `json:"currency"`
		Subtotal        int64          `json:"subtotal"`
		AmountDue       int64          `json:"amount_due"`
		AmountRemaining int64          `json:"amount_remaining"`
	}
	invoicesResponse struct {
		Invoices []invoiceSummary `json:"invoices"`
	}
	creditNotesResponse struct {
		CreditNotes []*invoice.CreditNote `json:"credit_notes"`
	}
	paymentsResponse struct {
		Payments []*invoice.Payment `json:"payments"`
	}
	plansResponse struct {
		Currency string         `json:"currency"`
		Plans    []pricing.Plan `json:"plans"`
	}
	tenantPlanResponse struct {
		Tenant        string                 `json:"tenant"`
		Plan          string                 `json:"plan"`
		Subscriptions []invoice.Subscription `json:"subscriptions"`
		Suggestion    *rating.Suggestion     `json:"suggestion"`
	}
	voidRequest struct {
		Reason string `json:"reason"`
	}
	notificationRulesResponse struct {
		Rules []notify.Rule `json:"rules"`
	}
	notificationVersionsResponse struct {
		Versions []notify.Rule `json:"versions"`
	}
	deliveriesResponse struct {
		Deliveries []notify.Delivery `json:"deliveries"`
	}
	deliveryResponse struct {
		Delivery notify.Delivery  `json:"delivery"`
		Event    notify.Event     `json:"event"`
		Attempts []notify.Attempt `json:"attempts"`
		Ack      *notify.Ack      `json:"ack,omitempty"`
	}
	couponRequest struct {
		Code string `json:"code"`
	}
	couponsResponse struct {
		Tenant  string               `json:"tenant"`
		Coupons []invoice.Redemption `json:"coupons"`
	}
	creditNoteRequest struct {
		Amount string `json:"amount"`
		Reason string `json:"reason"`
	}
	changePlanRequest struct {
		Plan      string    `json:"plan"`
		Effective time.Time `json:"effective,omitempty"`
	}
	applyRequest struct {
		Note string `json:"note,omitempty"`
	}
)

const (
	typeText = "text/plain; charset=utf-8"
	typeCSV  = "text/csv"
	typePDF  = "application/pdf"
	typeXLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
)

// operations is the table of the whole API.
func operations(g *gen) []op {
	reportParams := []*openapi3.Parameter{
		query("format", "csv (default), json, pdf or xlsx.", false, enum("csv", "json", "pdf", "xlsx")),
		query("meter", "Meters (repeated, or comma-separated); default every meter.", false, strings_()),
		query("group_by", "Dimensions, comma-separated.", false, str()),
		query("window", "hour, day, month (default) or none.", false, enum("hour", "day", "month", "none")),
		query("tenants", "Tenants, comma-separated; default every tenant with usage.", false, str()),
		tenantQuery,
		query("from", "Start of the period (RFC 3339).", false, rfc3339()),
		query("to", "End of the period (RFC 3339).", false, rfc3339()),
		query("month", "A calendar month, YYYY-MM.", false, month()),
		query("last", "A period ending now, e.g. 7d, 3m.", false, str()),
		query("filter", "dimension:value1|value2 (repeated for several dimensions).", false, strings_()),
	}
	reportTypes := []string{typeCSV, typePDF, typeXLSX}
	ops := []op{
		{method: "POST", path: "/v1/events", tag: "ingest", summary: "Ingest usage events (CloudEvents: structured, batched, binary mode, NDJSON)",
			body: ingestBody(g), status: http.StatusAccepted, resp: api.Accepted{},
			description: "Answered only after the events are durably stored. Resending an event (same source and id) is acknowledged and counted once. Errors list every bad event by index and field."},
		{method: "GET", path: "/v1/usage", tag: "usage", summary: "Exact usage of a meter by one tenant", params: []*openapi3.Parameter{
			query("tenant", "The tenant.", true, str()),
			query("meter", "The meter.", true, str()),
			query("from", "Start, on an hour (default: start of the current month).", false, rfc3339()),
			query("to", "End, on an hour (default: end of the current hour).", false, rfc3339()),
			query("window", "One row per window; none: one row per group.", false, enum("hour", "day", "month")),
			query("tz", "IANA time zone of day and month windows (default UTC).", false, str()),
			query("group_by", "Dimensions of the meter, comma-separated.", false, str()),
			query("user", "Only this user's usage (needs usage.read_users, or naming yourself).", false, str()),
		}, status: 200, resp: api.UsageResponse{}},
		{method: "GET", path: "/v1/meters", tag: "usage", summary: "The meters", status: 200, resp: metersResponse{}},
		{method: "GET", path: "/v1/tenants/{tenant}/quotas", tag: "quotas", summary: "A tenant's quotas and their state", params: []*openapi3.Parameter{tenantPath,
			query("users", "true: also each user's quotas (needs usage.read_users).", false, openapi3.NewBoolSchema())}, status: 200, resp: api.QuotasResponse{}},
		{method: "POST", path: "/v1/quota/check", tag: "quotas", summary: "Quota admission: may this amount be used?",
			params: []*openapi3.Parameter{tenantQuery}, body: g.body(jsonBody{value: api.QuotaCheckRequest{}, required: true, fields: []string{"tenant", "meter"}}), status: 200, resp: api.QuotaCheckResponse{}},
		{method: "GET", path: "/v1/audit", tag: "audit", summary: "The audit trail, in order", params: []*openapi3.Parameter{
			query("after", "Entries after this sequence number.", false, openapi3.NewInt64Schema().WithMin(0)),
			query("limit", "At most this many entries.", false, integer(1, 1000)),
		}, status: 200, resp: auditResponse{}},
		{method: "POST", path: "/-/reload", tag: "operations", summary: "Reload the configuration", status: 200, resp: reloadResponse{}},
		{method: "POST", path: "/v1/admin/backup", tag: "operations", summary: "Stream a consistent backup of the store (usagectl backup)",
			description: "A ledger checkpoint as a tar with a manifest and SHA-256 checksums, sealed with the archive key when one is configured. A failure after the answer began is reported in the trailer named by the Trailer header; usagectl backup checks every checksum.",
			status:      200, resp: backup.ContentType},
		{method: "GET", path: "/v1/notifications/rules", tag: "notifications", summary: "Notification rules", params: []*openapi3.Parameter{tenantQuery},
			status: 200, resp: notificationRulesResponse{}},
		{method: "POST", path: "/v1/notifications/rules", tag: "notifications", summary: "Create a notification rule (a webhook secret is shown once, here)", params: []*openapi3.Parameter{tenantQuery},
			body: g.body(jsonBody{value: notify.RuleInput{}, required: true, fields: []string{"meter", "condition", "channels"}}), status: http.StatusCreated, resp: notify.Rule{}},
		{method: "GET", path: "/v1/notifications/rules/{id}", tag: "notifications", summary: "One notification rule", params: []*openapi3.Parameter{idPath, tenantQuery},
			status: 200, resp: notify.Rule{}},
		{method: "PUT", path: "/v1/notifications/rules/{id}", tag: "notifications", summary: "Replace a notification rule (a new version)", params: []*openapi3.Parameter{idPath, tenantQuery},
			body: g.body(jsonBody{value: notify.RuleInput{}, required: true, fields: []string{"meter", "condition", "channels"}}), status: 200, resp: notify.Rule{}},
		{method: "DELETE", path: "/v1/notifications/rules/{id}", tag: "notifications", summary: "Delete a notification rule", params: []*openapi3.Parameter{idPath, tenantQuery},
			status: http.StatusNoContent},
		{method: "GET", path: "/v1/notifications/rules/{id}/versions", tag: "notifications", summary: "Every version of a notification rule", params: []*openapi3.Parameter{idPath, tenantQuery},
			status: 200, resp: notificationVersionsResponse{}},
		{method: "GET", path: "/v1/notifications/deliveries", tag: "notifications", summary: "The delivery log, newest first", params: []*openapi3.Parameter{tenantQuery,
			query("state", "Only deliveries in this state.", false, enum("pending", "delivered", "dead", "cancelled")),
			query("limit", "At most this many deliveries.", false, integer(1, 10000))},
			status: 200, resp: deliveriesResponse{}},
		{method: "GET", path: "/v1/notifications/deliveries/{id}", tag: "notifications", summary: "One delivery with its event and every attempt", params: []*openapi3.Parameter{idPath, tenantQuery},
			status: 200, resp: deliveryResponse{}},
		{method: "POST", path: "/v1/notifications/deliveries/{id}/replay", tag: "notifications", summary: "Deliver again, by hand (same idempotency key)", params: []*openapi3.Parameter{idPath, tenantQuery},
			status: http.StatusAccepted, resp: notify.Delivery{}},
		{method: "POST", path: "/v1/notifications/events/{id}/ack", tag: "notifications", summary: "Acknowledge an event: its escalation tiers not yet due are cancelled", params: []*openapi3.Parameter{idPath, tenantQuery},
			status: 200, resp: notify.Ack{}},
		{method: "GET", path: "/-/healthy", tag: "operations", summary: "Liveness", public: true, status: 200, resp: typeText},
		{method: "GET", path: "/-/ready", tag: "operations", summary: "Readiness: the store is open", public: true, status: 200, resp: typeText},
		{method: "GET", path: "/v1/openapi.json", tag: "operations", summary: "This document", public: true, status: 200, resp: "application/json"},
		{method: "GET", path: "/metrics", tag: "operations", summary: "Prometheus metrics (protected by the web config's TLS and basic auth)", status: 200, resp: "text/plain"},
		{method: "GET", path: "/", tag: "operations", summary: "Landing page", public: true, status: 200, resp: "text/html; charset=utf-8"},
		{method: "GET", path: "/debug/pprof/", tag: "operations", summary: "Go profiling index", status: 200, resp: "text/html; charset=utf-8"},
		{method: "GET", path: "/debug/pprof/profile", tag: "operations", summary: "CPU profile", params: []*openapi3.Parameter{
			query("seconds", "Duration of the profile.", false, openapi3.NewIntegerSchema().WithMin(1))}, status: 200, resp: "application/octet-stream"},
		{method: "GET", path: "/debug/pprof/trace", tag: "operations", summary: "Execution trace", params: []*openapi3.Parameter{
			query("seconds", "Duration of the trace.", false, openapi3.NewFloat64Schema().WithMin(0))}, status: 200, resp: "application/octet-stream"},

		{method: "GET", path: "/v1/invoices", tag: "billing", summary: "Invoices", params: []*openapi3.Parameter{
			tenantQuery, query("status", "Only invoices in this status.", false, str()), query("period", "Billing period, YYYY-MM.", false, month())},
			status: 200, resp: invoicesResponse{}},
		{method: "GET", path: "/v1/invoices/{id}", tag: "billing", summary: "One invoice", params: []*openapi3.Parameter{idPath, tenantQuery,
			query("format", "json (default), csv or pdf; else the Accept header decides.", false, enum("json", "csv", "pdf"))},
			status: 200, resp: invoice.Invoice{}, respTypes: []string{typeCSV, typePDF}},
		{method: "GET", path: "/v1/billing/kpis", tag: "billing", summary: "Key figures of a billing period", params: []*openapi3.Parameter{
			query("period", "Billing period, YYYY-MM.", true, month()), tenantQuery, query("group_by", "plan: figures per plan.", false, enum("plan"))},
			status: 200, resp: billing.KPIs{}},
		{method: "POST", path: "/v1/invoices/run", tag: "billing", summary: "Draft or refresh the invoices of a period", params: []*openapi3.Parameter{
			query("period", "Billing period, YYYY-MM.", true, month())}, status: 200, resp: invoice.RunResult{}},
		{method: "POST", path: "/v1/invoices/{id}/finalize", tag: "billing", summary: "Finalize a draft invoice", params: []*openapi3.Parameter{idPath, tenantQuery},
			status: 200, resp: invoice.Invoice{}},
		{method: "POST", path: "/v1/invoices/{id}/void", tag: "billing", summary: "Void an invoice", params: []*openapi3.Parameter{idPath, tenantQuery},
			body: g.body(jsonBody{value: voidRequest{}, fields: []string{"reason"}}), status: 200, resp: invoice.Invoice{}},
		{method: "POST", path: "/v1/invoices/{id}/credit-notes", tag: "billing", summary: "Issue a credit note against an invoice", params: []*openapi3.Parameter{idPath, tenantQuery},
			body: g.body(jsonBody{value: creditNoteRequest{}, required: true, fields: []string{"amount"}, desc: "amount in major units, e.g. \"12.50\""}), status: http.StatusCreated, resp: invoice.CreditNote{}},
		{method: "GET", path: "/v1/credit-notes", tag: "billing", summary: "Credit notes", params: []*openapi3.Parameter{tenantQuery}, status: 200, resp: creditNotesResponse{}},
		{method: "POST", path: "/v1/invoices/collect", tag: "billing", summary: "Send the finalized invoices queued for Stripe collection", status: 200, resp: stripecollect.Result{}},
		{method: "POST", path: "/v1/billing/dunning/run", tag: "billing", summary: "Take the dunning steps that are due", status: 200, resp: billing.DunningResult{}},
		{method: "GET", path: "/v1/invoices/{id}/dunning", tag: "billing", summary: "An invoice's dunning record", params: []*openapi3.Parameter{idPath, tenantQuery},
			status: 200, resp: invoice.Dunning{}},
		{method: "GET", path: "/v1/tenants/{tenant}/credit-grants", tag: "billing", summary: "A tenant's credit grants and what they hold", params: []*openapi3.Parameter{tenantPath},
			status: 200, resp: invoice.GrantBalance{}},
		{method: "POST", path: "/v1/tenants/{tenant}/credit-grants", tag: "billing", summary: "Give a tenant a credit grant", params: []*openapi3.Parameter{tenantPath},
			body: g.body(jsonBody{value: billing.GrantRequest{}, required: true, fields: []string{"amount"}, desc: "amount in major units, e.g. \"50.00\""}), status: http.StatusCreated, resp: invoice.Grant{}},
		{method: "GET", path: "/v1/tenants/{tenant}/coupons", tag: "billing", summary: "A tenant's redeemed coupons", params: []*openapi3.Parameter{tenantPath},
			status: 200, resp: couponsResponse{}},
		{method: "POST", path: "/v1/tenants/{tenant}/coupons", tag: "billing", summary: "Redeem a coupon for a tenant", params: []*openapi3.Parameter{tenantPath},
			body: g.body(jsonBody{value: couponRequest{}, required: true, fields: []string{"code"}}), status: http.StatusCreated, resp: invoice.Redemption{}},
		{method: "GET", path: "/v1/tenants/{tenant}/balance", tag: "billing", summary: "A tenant's balance", params: []*openapi3.Parameter{tenantPath}, status: 200, resp: invoice.Balance{}},
		{method: "GET", path: "/v1/tenants/{tenant}/statement", tag: "billing", summary: "A tenant's statement of account", params: []*openapi3.Parameter{tenantPath}, status: 200, resp: invoice.Statement{}},
		{method: "GET", path: "/v1/payments", tag: "billing", summary: "Payments", params: []*openapi3.Parameter{tenantQuery}, status: 200, resp: paymentsResponse{}},
		{method: "POST", path: "/v1/payments", tag: "billing", summary: "Record a payment", params: []*openapi3.Parameter{tenantQuery},
			body: g.body(jsonBody{value: billing.PaymentRequest{}, required: true, fields: []string{"amount"}, desc: "amount in major units, e.g. \"120.00\""}), status: http.StatusCreated, resp: invoice.Payment{}},
		{method: "GET", path: "/v1/plans", tag: "billing", summary: "The plan catalogue", status: 200, resp: plansResponse{}},
		{method: "GET", path: "/v1/tenants/{tenant}/plan", tag: "billing", summary: "A tenant's plan, plan history and a cheaper-plan suggestion", params: []*openapi3.Parameter{tenantPath},
			status: 200, resp: tenantPlanResponse{}},
		{method: "POST", path: "/v1/tenants/{tenant}/plan", tag: "billing", summary: "Change a tenant's plan", params: []*openapi3.Parameter{tenantPath},
			body: g.body(jsonBody{value: changePlanRequest{}, required: true, fields: []string{"plan"}, desc: "effective: when the change applies (default now)"}), status: 200, resp: invoice.Subscription{}},
		{method: "POST", path: "/v1/webhooks/stripe", tag: "billing", summary: "Stripe payment webhook (signed by Stripe-Signature)", public: true,
			body:   &openapi3.RequestBody{Required: true, Content: openapi3.NewContentWithJSONSchema(openapi3.NewObjectSchema().WithAnyAdditionalProperties())},
			status: 200, resp: nil},

		{method: "GET", path: "/v1/analytics/trends", tag: "analytics", summary: "Usage growth per tenant and meter", params: []*openapi3.Parameter{
			tenantQuery, query("meter", "Meters (repeated, or comma-separated; default ai_tokens).", false, strings_()), query("at", "As of (default now).", false, rfc3339()),
			query("limit", "At most this many rows.", false, integer(1, 100000))}, status: 200, resp: analytics.TrendsResponse{}},
		{method: "GET", path: "/v1/analytics/seasonality", tag: "analytics", summary: "Hour-of-week usage profile", params: []*openapi3.Parameter{
			query("tenant", "The tenant.", true, str()), query("meter", "The meter.", true, str()),
			query("from", "Start (default 28 days before to).", false, rfc3339()), query("to", "End (default today).", false, rfc3339())},
			status: 200, resp: stats.Profile{}},
		{method: "GET", path: "/v1/analytics/forecast", tag: "analytics", summary: "Usage forecast", params: []*openapi3.Parameter{
			query("tenant", "The tenant.", true, str()), query("meter", "The meter.", true, str()), query("season", "Seasonality model.", false, str()),
			query("at", "As of (default now).", false, rfc3339()), query("history", "Hours of history.", false, integer(0, 9600)),
			query("horizon", "Days ahead.", false, integer(0, 240))}, status: 200, resp: stats.Forecast{}},
		{method: "GET", path: "/v1/analytics/adoption", tag: "analytics", summary: "Feature adoption", params: []*openapi3.Parameter{
			query("tenant", "The tenant.", true, str()), query("from", "Start (default 56 days before to).", false, rfc3339()), query("to", "End (default today).", false, rfc3339())},
			status: 200, resp: stats.Adoption{}},
		{method: "GET", path: "/v1/analytics/engagement", tag: "analytics", summary: "Active and inactive users", params: []*openapi3.Parameter{
			query("tenant", "The tenant.", true, str()), query("at", "As of (default now).", false, rfc3339()),
			query("inactive_days", "Days without activity that make a user inactive.", false, integer(1, 3650)),
			query("users", "true: list the users (needs usage.read_users).", false, enum("true", "false"))}, status: 200, resp: stats.Engagement{}},
		{method: "GET", path: "/v1/analytics/new-users", tag: "analytics", summary: "Users first seen per window", params: []*openapi3.Parameter{
			query("tenant", "The tenant.", true, str()), query("from", "Start (default 30 days before to).", false, rfc3339()), query("to", "End (default today).", false, rfc3339()),
			query("window", "hour, day (default) or month.", false, enum("hour", "day", "month")),
			query("users", "true: list the users (needs usage.read_users).", false, enum("true", "false"))}, status: 200, resp: stats.NewUsers{}},
		{method: "GET", path: "/v1/analytics/ingestion", tag: "analytics", summary: "Ingestion volumes and frequency", params: []*openapi3.Parameter{
			query("tenant", "The tenant.", true, str()), query("from", "Start (default 7 days before to).", false, rfc3339()), query("to", "End (default this hour).", false, rfc3339())},
			status: 200, resp: stats.Ingestion{}},
		{method: "GET", path: "/v1/analytics/insights", tag: "analytics", summary: "Cost and plan insights", params: []*openapi3.Parameter{
			tenantQuery, query("at", "As of (default now).", false, rfc3339())}, status: 200, resp: analytics.InsightsResponse{}},
		{method: "GET", path: "/v1/analytics/insights/applied", tag: "analytics", summary: "Applied insights and their effect", params: []*openapi3.Parameter{tenantQuery},
			status: 200, resp: analytics.AppliedResponse{}},
		{method: "POST", path: "/v1/analytics/tenants/{tenant}/insights/{id}/apply", tag: "analytics", summary: "Mark an insight applied (records a baseline)",
			params: []*openapi3.Parameter{tenantPath, path("id", "The insight.")}, body: g.body(jsonBody{value: applyRequest{}}), status: 200, resp: insights.Applied{}},
		{method: "GET", path: "/v1/reports/usage", tag: "reports", summary: "Usage report", params: reportParams, status: 200, resp: "application/json", respTypes: reportTypes},
		{method: "GET", path: "/v1/reports/executive", tag: "reports", summary: "Executive summary", params: reportParams, status: 200, resp: "application/json", respTypes: reportTypes},
		{method: "GET", path: "/v1/reports/compliance", tag: "reports", summary: "Compliance report", params: append(slices.Clone(reportParams),
			query("scope", "tenant: only what concerns the tenant (no server paths, key settings or refused principals), whatever the caller may read; it never widens.", false, enum("tenant"))), status: 200, resp: "application/json", respTypes: reportTypes},
		{method: "POST", path: "/v1/reports", tag: "reports", summary: "A report from a definition (JSON or YAML)", params: []*openapi3.Parameter{
			query("format", "Overrides the definition's format.", false, enum("csv", "json", "pdf", "xlsx")), tenantQuery},
			body: g.yamlOrJSON(report.Definition{}), status: 200, resp: "application/json", respTypes: reportTypes},
	}
	return ops
}

// gen turns Go types into component schemas.
type gen struct {
	g       *openapi3gen.Generator
	schemas openapi3.Schemas
	err     error
	// request is set while a request body's schema is made: it requires no field by itself.
	request bool
	// nullable are the components that some field points to (null when the pointer is nil).
	nullable []string
}

// schemaName names a Go type's component: its name, after its package's when that is not
// already the name (invoice.Invoice is Invoice, stats.Growth is StatsGrowth); types of the API
// package and of this table keep their own names.
func schemaName(t reflect.Type) string {
	name := t.Name()
	pkg := t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:]
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	if pkg == "api" || pkg == "spec" || pkg == "problem" || strings.EqualFold(pkg, name) {
		return exported(name)
	}
	return exported(pkg) + exported(name)
}

func exported(s string) string {
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

var (
	textMarshaler = reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]()
	durationType  = reflect.TypeFor[time.Duration]()
)

func newGen() *gen {
	g := &gen{schemas: openapi3.Schemas{}}
	g.g = openapi3gen.NewGenerator(
		openapi3gen.UseAllExportedFields(),
		openapi3gen.CreateComponentSchemas(openapi3gen.ExportComponentSchemasOptions{ExportComponentSchemas: true, ExportTopLevelSchema: true}),
		openapi3gen.CreateTypeNameGenerator(schemaName),
		// encoding/json's names: the json tag's, else the Go field's (never the yaml tag's).
		openapi3gen.CreateFieldNameGenerator(func(f reflect.StructField, _ string) string {
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				return name
			}
			return f.Name
		}),
		openapi3gen.SchemaCustomizer(g.customize),
	)
	return g
}

// customize corrects what reflection alone gets wrong about encoding/json's output and marks the
// fields it always writes as required.
func (g *gen) customize(name string, t reflect.Type, tag reflect.StructTag, s *openapi3.Schema) error {
	if tag.Get("json") == "-" {
		return &openapi3gen.ExcludeSchemaSentinel{}
	}
	switch {
	case t == reflect.TypeFor[time.Time]():
		*s = *openapi3.NewDateTimeSchema()
	case t.Implements(textMarshaler) && t.Kind() != reflect.Pointer:
		// Its text is its JSON; its component (other fields refer to it) says so too.
		*s = *openapi3.NewStringSchema()
		g.schemas[schemaName(t)] = openapi3.NewSchemaRef("", openapi3.NewStringSchema())
	case t == durationType:
		*s = *openapi3.NewIntegerSchema()
		s.Description = "nanoseconds"
	case t.Kind() == reflect.Struct && !g.request:
		for i := range t.NumField() {
			f := t.Field(i)
			jname, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || jname == "-" || f.Anonymous || strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
				continue
			}
			if jname == "" {
				jname = f.Name
			}
			s.Required = append(s.Required, jname)
		}
	}
	// encoding/json writes a nil slice, map or pointer as null. (The generator hands over a
	// pointer's element type and says nullable.) A pointer to a struct refers to the struct's
	// component, which is then nullable wherever it is used.
	nullable := s.Nullable
	s.Nullable = false // not a 3.1 keyword: null is a type there
	switch {
	case nullable && t.Kind() == reflect.Struct && t != reflect.TypeFor[time.Time]():
		g.nullable = append(g.nullable, schemaName(t))
	case nullable, t.Kind() == reflect.Slice, t.Kind() == reflect.Map, t.Kind() == reflect.Interface:
		if s.Type != nil && len(*s.Type) == 1 {
			s.Type = &openapi3.Types{(*s.Type)[0], openapi3.TypeNull}
		}
	}
	return nil
}

// ref returns a reference to the component schema of v's type.
func (g *gen) ref(v any) *openapi3.SchemaRef {
	r, err := g.g.NewSchemaRefForValue(v, g.schemas)
	if err != nil && g.err == nil {
		g.err = fmt.Errorf("schema of %T: %w", v, err)
	}
	return r
}

// requestRef is ref for a request body's type: only the listed fields are required.
func (g *gen) requestRef(v any, required ...string) *openapi3.SchemaRef {
	g.request = true
	r := g.ref(v)
	g.request = false
	if c := g.schemas[strings.TrimPrefix(r.Ref, "#/components/schemas/")]; c != nil && c.Value != nil {
		c.Value.Required = required
	}
	return r
}

// yamlOrJSON is a body taken as JSON or as YAML (JSON's superset): report definitions.
func (g *gen) yamlOrJSON(v any) *openapi3.RequestBody {
	ref := g.requestRef(v)
	return &openapi3.RequestBody{Required: true, Content: openapi3.Content{
		"application/json": &openapi3.MediaType{Schema: ref},
		"application/yaml": &openapi3.MediaType{Schema: ref},
	}}
}

func (g *gen) body(b jsonBody) *openapi3.RequestBody {
	return &openapi3.RequestBody{Required: b.required, Description: b.desc,
		Content: openapi3.NewContentWithJSONSchemaRef(g.requestRef(b.value, b.fields...))}
}

// Build returns the document.
func Build() (*openapi3.T, error) {
	g := newGen()
	doc := &openapi3.T{
		OpenAPI: "3.1.0",
		Info: &openapi3.Info{Title: "usagemeter", Version: Version,
			Description: "The HTTP API of usage-exporter: usage ingestion (CloudEvents), exact usage, quotas, audit, billing, analytics and reports. " +
				"Errors are RFC 9457 problem details (application/problem+json).",
			License: &openapi3.License{Name: "See the repository"}},
		Servers: openapi3.Servers{{URL: "http://localhost:9477", Description: "usage-exporter's default address"}},
		Paths:   openapi3.NewPaths(),
		Components: &openapi3.Components{
			Schemas: g.schemas,
			SecuritySchemes: openapi3.SecuritySchemes{
				"bearer": &openapi3.SecuritySchemeRef{Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer").
					WithDescription("An API key (ingestion, quota checks), a static token or an OIDC JWT (people), as Authorization: Bearer. Which operations a credential may call is decided by the Rego policies (policies/).")},
				"basic": &openapi3.SecuritySchemeRef{Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("basic").
					WithDescription("/metrics only, when --web.config.file sets basic_auth_users.")},
			},
			Responses: openapi3.ResponseBodies{},
		},
		Security: *openapi3.NewSecurityRequirements().With(openapi3.NewSecurityRequirement().Authenticate("bearer")),
	}
	problemRef := g.ref(problem.Details{})
	problemResp := func(desc string) *openapi3.ResponseRef {
		return &openapi3.ResponseRef{Value: openapi3.NewResponse().WithDescription(desc).
			WithContent(openapi3.Content{problem.ContentType: &openapi3.MediaType{Schema: problemRef}})}
	}
	doc.Components.Responses["Problem"] = problemResp("An RFC 9457 problem: what was wrong, and for invalid events every bad field by index.")
	problemAt := &openapi3.ResponseRef{Ref: "#/components/responses/Problem"}

	ops := operations(g)
	for _, o := range ops {
		operation := &openapi3.Operation{Tags: []string{o.tag}, Summary: o.summary, Description: o.description,
			OperationID: operationID(o.method, o.path), Responses: openapi3.NewResponses()}
		operation.Responses.Delete("default")
		for _, p := range o.params {
			operation.Parameters = append(operation.Parameters, &openapi3.ParameterRef{Value: p})
		}
		if o.body != nil {
			operation.RequestBody = &openapi3.RequestBodyRef{Value: o.body}
		}
		ok := openapi3.NewResponse().WithDescription(http.StatusText(o.status))
		switch v := o.resp.(type) {
		case nil:
		case string:
			ok.Content = openapi3.Content{v: &openapi3.MediaType{Schema: openapi3.NewSchemaRef("", &openapi3.Schema{})}}
		default:
			ok.Content = openapi3.Content{"application/json": &openapi3.MediaType{Schema: g.ref(v)}}
		}
		for _, mt := range o.respTypes {
			ok.Content[mt] = &openapi3.MediaType{Schema: openapi3.NewSchemaRef("", openapi3.NewStringSchema().WithFormat("binary"))}
		}
		operation.Responses.Set(fmt.Sprint(o.status), &openapi3.ResponseRef{Value: ok})
		operation.Responses.Set("default", problemAt)
		switch {
		case o.public:
			operation.Security = openapi3.NewSecurityRequirements()
		case o.path == "/metrics":
			operation.Security = openapi3.NewSecurityRequirements().With(openapi3.NewSecurityRequirement().Authenticate("basic")).With(openapi3.NewSecurityRequirement())
		}
		doc.AddOperation(o.path, o.method, operation)
	}
	if g.err != nil {
		return nil, g.err
	}
	for _, name := range g.nullable {
		if c := g.schemas[name]; c != nil && c.Value != nil && c.Value.Type != nil && len(*c.Value.Type) == 1 {
			c.Value.Type = &openapi3.Types{(*c.Value.Type)[0], openapi3.TypeNull}
		}
	}
	tags := map[string]bool{}
	for _, o := range ops {
		if !tags[o.tag] {
			tags[o.tag] = true
			doc.Tags = append(doc.Tags, &openapi3.Tag{Name: o.tag})
		}
	}
	return doc, nil
}

// operationID names an operation for generated clients: getV1Usage, postV1Events, ...
func operationID(method, p string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '-' || r == '{' || r == '}' || r == '.' }) {
		b.WriteString(exported(part))
	}
	if p == "/" {
		b.WriteString("Landing")
	}
	return b.String()
}

// JSON returns the document as the committed file holds it.
func JSON() ([]byte, error) {
	doc, err := Build()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Routes lists the document's operations as "METHOD /path", sorted.
func Routes(doc *openapi3.T) []string {
	var out []string
	for p, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			out = append(out, m+" "+p)
		}
	}
	slices.Sort(out)
	return out
}
