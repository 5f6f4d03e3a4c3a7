package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Money panels: the plugin's frames carry amounts in the catalogue's currency (USD by default).
const money = "currencyUSD"

// billing: revenue, invoices and usage from the plugin (the ledger and billing/, not Prometheus).
func billing() (dashboard.Dashboard, error) {
	return board("usagemeter-billing", "Billing and revenue",
		"Revenue KPIs, invoices and usage summaries, from the usagemeter plugin. Forecasts are per tenant: see the tenant drill-down.",
		[]string{"billing"}, vars(true, tenantVar(oneOrAll), periodVar()),
		row{"Revenue", []panel{
			{kind: statKind, w: 24, h: 5, unit: money, title: "Billing KPIs",
				desc:    "Revenue, ARPU, overage revenue and outstanding balance over the time range.",
				targets: []target{pq(PluginQuery{QueryType: "billing_kpis", Tenant: "$tenant", Period: "$period"})}},
			{stacked: true, unit: money, title: "Revenue by plan",
				desc:    "Revenue per aggregation window, per plan.",
				targets: []target{pq(PluginQuery{QueryType: "billing_kpis", Tenant: "$tenant", GroupBy: "plan", Period: "$period"})}},
		}},
		row{"Invoices and usage", []panel{
			{kind: tableKind, w: 24, h: 10, unit: money, title: "Invoices",
				desc:    "Invoices and their lines in the time range: status, subtotal, tax, total and balance.",
				targets: []target{pq(PluginQuery{QueryType: "invoices", Tenant: "$tenant", Period: "$period"})}},
			{kind: tableKind, w: 24, h: 10, unit: "short", title: "Usage summary",
				desc:    "Usage per tenant and meter over the time range, with quota state.",
				targets: []target{pq(PluginQuery{QueryType: "usage_summary", Tenant: "$tenant", Period: "$period"})}},
		}},
	)
}

// executive: KPIs and trends, metric and plugin panels side by side.
func executive() (dashboard.Dashboard, error) {
	return board("usagemeter-executive", "Executive summary",
		"Key figures and trends: tenants, active users, consumption, revenue, adoption and insights.",
		[]string{"executive"}, vars(true, tenantVar(oneOrAll), periodVar()),
		row{"Key figures", []panel{
			{kind: statKind, w: 6, h: 4, unit: "none", title: "Tenants",
				desc:    "Tenants known to the exporter.",
				targets: []target{q(`count(usage_tenant_info{`+anyTenant+`})`, "tenants")}},
			{kind: statKind, w: 6, h: 4, unit: "short", title: "Monthly active users",
				desc:    "Distinct users active over the trailing 30 days, all selected tenants.",
				targets: []target{q(`sum(max by (tenant) (usage_active_users{`+anyTenant+`, window="30d"}))`, "MAU")}},
			{kind: statKind, w: 6, h: 4, unit: "short", title: "AI tokens this month",
				desc:    "AI tokens used in the current calendar month, from the exact quota counter (tenants whose plan limits AI tokens).",
				targets: []target{q(`sum(max by (tenant) (usage_quota_used{`+anyTenant+`, meter="ai_tokens"}))`, "tokens")}},
			{kind: statKind, w: 6, h: 4, unit: "bytes", title: "Storage",
				desc:    "Storage held now, all classes.",
				targets: []target{q(`sum(usage_storage_bytes{`+anyTenant+`})`, "storage")}},
			{kind: statKind, w: 24, h: 5, unit: money, title: "Revenue",
				desc:    "Revenue, ARPU, overage revenue and outstanding balance over the time range (plugin).",
				targets: []target{pq(PluginQuery{QueryType: "billing_kpis", Tenant: "$tenant", Period: "$period"})}},
		}},
		row{"Trends", []panel{
			{unit: "short", title: "AI tokens per day",
				desc:    "AI tokens over the trailing 24 hours.",
				targets: []target{q(`sum(increase(usage_ai_tokens_total{`+anyTenant+`}[1d]))`, "tokens")}},
			{unit: "short", title: "Active users",
				desc:    "Distinct active users over trailing 1, 7 and 30 days.",
				targets: []target{q(`sum by (window) (usage_active_users{`+anyTenant+`})`, "{{window}}")}},
			{unit: "bytes", title: "Storage",
				desc:    "Storage held over time, all classes.",
				targets: []target{q(`sum(usage_storage_bytes{`+anyTenant+`})`, "storage")}},
			{unit: "percentunit", title: "Feature adoption",
				desc:    "Share of users using each feature, over time (plugin).",
				targets: []target{pq(PluginQuery{QueryType: "feature_adoption", Tenant: "$tenant", Period: "$period"})}},
		}},
		row{"Insights", []panel{
			{kind: tableKind, unit: "none", title: "Optimization insights",
				desc:    "Tenants paying for unused capacity, near a cheaper or needed plan, or with idle users (plugin).",
				targets: []target{pq(PluginQuery{QueryType: "insights", Tenant: "$tenant", Period: "$period"})}},
			{unit: "none", title: "AI token anomalies",
				desc:    "z-scores of AI token rates against each tenant's 7-day baseline, for the tenants past 3 in the range (plugin).",
				targets: []target{pq(PluginQuery{QueryType: "anomalies", Tenant: "$tenant", Meter: "ai_tokens", Period: "$period"})}},
		}},
	)
}

// compliance: the audit trail, and evidence that the ledger refuses, dedupes and reloads as it
// should.
func compliance() (dashboard.Dashboard, error) {
	return board("usagemeter-compliance", "Compliance",
		"The audit trail of access and changes, and the ledger's integrity signals.",
		[]string{"compliance", "audit"}, vars(true, tenantVar(oneOrAll), periodVar()),
		row{"Audit trail", []panel{
			{kind: tableKind, w: 24, h: 14, unit: "none", title: "Audit trail",
				desc:    "Who did what, when, to which tenant: queries, exports, configuration and billing changes (hash-chained, from the plugin).",
				targets: []target{pq(PluginQuery{QueryType: "audit", Tenant: "$tenant", Period: "$period"})}},
		}},
		row{"Ledger integrity", []panel{
			{w: 8, unit: "cps", title: "Events rejected by reason",
				desc:    "Events refused per second, by reason: nothing refused is stored.",
				targets: []target{q(`sum by (reason) (rate(usage_exporter_events_rejected_total[$__rate_interval]))`, "{{reason}}")}},
			{w: 8, unit: "cps", title: "Duplicates acknowledged",
				desc:    "Events acknowledged as duplicates (same source and id) and counted once.",
				targets: []target{q(`sum(rate(usage_exporter_events_duplicates_total[$__rate_interval]))`, "duplicates")}},
			{kind: statKind, w: 4, h: 8, unit: "bool_yes_no", title: "Last config reload succeeded",
				desc:    "Whether the last configuration reload succeeded, on every exporter.",
				targets: []target{q(`min(usage_exporter_config_last_reload_successful)`, "reload")}},
			{kind: statKind, w: 4, h: 8, unit: "dateTimeAsIso", title: "Last config reload",
				desc:    "When the configuration was last loaded successfully.",
				targets: []target{q(`max(usage_exporter_config_last_reload_success_timestamp_seconds) * 1000`, "reloaded")}},
		}},
	)
}
