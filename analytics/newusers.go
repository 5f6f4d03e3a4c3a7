package analytics

import (
	"net/http"

	"github.com/usagemeter/usagemeter/analytics/stats"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// newUsers serves GET /v1/analytics/new-users?tenant=&from=&to=&window=[&users=true]: the users
// first seen in the period, per window. Defaults: the 30 days before the current day, by day.
// Listing the users by id is per-user detail (usage.read_users), as for engagement.
func (s *Service) newUsers(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	tenant := p.required("tenant")
	to := p.time("to", stats.DayFloor(s.now()))
	from := p.time("from", to.Add(-30*stats.Day))
	window := p.str("window")
	if window == "" {
		window = ledger.WindowDay
	}
	users := p.str("users") == "true"
	if p.err == nil && users {
		if err := s.authorizeUsers(r, tenant); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	s.respond(w, r, p, func() (any, error) {
		return stats.NewUsersOf(r.Context(), s.Store, tenant, from, to, window, users)
	})
}
