// Package route declares HTTP endpoints together with the policy action that guards them, so
// that every endpoint, whichever package serves it, is authenticated, authorized and audited by
// the same middleware: a route cannot be registered without naming its action.
package route

import "net/http"

// Well-known actions. The Rego policies in policies/ decide each of them.
const (
	ActionIngest        = "events.ingest"
	ActionUsageRead     = "usage.read"       // tenant-level aggregates
	ActionUsageUserRead = "usage.read_users" // per-user detail (group_by user, top users)
	ActionMetersRead    = "meters.read"
	ActionQuotasRead    = "quotas.read"
	ActionQuotaCheck    = "quota.check"
	ActionAuditRead     = "audit.read"
	ActionAdmin         = "admin" // reload, retention, archive
	ActionBillingRead   = "billing.read"
	ActionBillingWrite  = "billing.write"
	ActionPlansRead     = "plans.read"
	ActionPlansChange   = "plans.change"
	ActionAnalyticsRead = "analytics.read"
	// ActionAnalyticsWrite changes analytics state: applying an insight.
	ActionAnalyticsWrite = "analytics.write"
	ActionReportsExport  = "reports.export"
	// Notification rules and their deliveries (notify/): reading, and managing or replaying.
	ActionNotificationsRead  = "notifications.read"
	ActionNotificationsWrite = "notifications.write"
	// ActionPublic marks endpoints that authenticate by other means (health probes, signed
	// payment-provider webhooks). They are still audited when they fail.
	ActionPublic = "public"
)

// Route is one endpoint.
type Route struct {
	Method  string // GET, POST, ...
	Pattern string // net/http pattern path, e.g. /v1/tenants/{tenant}/quotas
	Action  string // policy action; see the constants above
	// Audit says whether allowed requests are written to the audit trail (reads, exports and
	// admin actions are; ingestion and probes are not, to keep the trail about people).
	Audit bool
	// Streams marks long responses (report exports, profiles): they get the export write
	// deadline (http.export_write_timeout) instead of the ordinary one.
	Streams bool
	Handler http.HandlerFunc
}

// Tenant returns the tenant a request is about: the {tenant} path value, else the tenant query
// parameter. Empty means "all tenants" (or none).
func Tenant(r *http.Request) string {
	if t := r.PathValue("tenant"); t != "" {
		return t
	}
	return r.URL.Query().Get("tenant")
}
