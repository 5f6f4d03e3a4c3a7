package cluster

import (
	"net/http"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
)

// Billing commands (invoice runs, finalization, voids, credit notes, payments, plan changes) do
// not go through the log yet. Executed by whichever replica received them, they would give each
// replica different invoices, numbers and plans, and quotas that disagree: in cluster mode they are
// refused, clearly, until they are replicated (docs/cluster.md, "Not done yet").
func unreplicated(r route.Route) bool {
	return r.Action == route.ActionBillingWrite || r.Action == route.ActionPlansChange || r.Pattern == "/v1/webhooks/stripe"
}

// RefuseUnreplicated returns routes with every command that is not replicated yet answering 501.
func RefuseUnreplicated(routes []route.Route) []route.Route {
	out := make([]route.Route, len(routes))
	for i, r := range routes {
		if unreplicated(r) {
			r.Handler = refuse
		}
		out[i] = r
	}
	return out
}

func refuse(w http.ResponseWriter, _ *http.Request) {
	problem.Write(w, problem.Details{Type: "https://usagemeter.dev/problems/not-replicated", Title: "Not available in cluster mode",
		Status: http.StatusNotImplemented,
		Detail: "billing commands and plan changes are not replicated through the cluster's log yet; run them on a single-node exporter (docs/cluster.md)"})
}
