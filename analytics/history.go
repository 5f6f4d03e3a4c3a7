package analytics

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/usagemeter/usagemeter/analytics/stats"
)

// History is added to an analytics answer whose analysed span reaches back before the ledger's
// history begins: on a fresh stack every figure of a trend, profile or forecast would otherwise
// be a silent zero.
type History struct {
	Begins       time.Time `json:"begins"`
	AnalysedFrom time.Time `json:"analysed_from"`
	Note         string    `json:"note"`
}

// lookback is how far back an analytics endpoint reads by default, when no from= is given.
var lookback = map[string]time.Duration{
	"/v1/analytics/trends":      62 * stats.Day, // the month before the last complete month
	"/v1/analytics/seasonality": 28 * stats.Day,
	"/v1/analytics/forecast":    28 * stats.Day,
	"/v1/analytics/adoption":    56 * stats.Day,
	"/v1/analytics/engagement":  30 * stats.Day,
	"/v1/analytics/new-users":   30 * stats.Day,
	"/v1/analytics/ingestion":   7 * stats.Day,
	"/v1/analytics/insights":    30 * stats.Day,
}

// withHistory adds "history" to h's JSON answer when the span it analyses starts before the
// ledger's history (ledger.Store.Began).
func (s *Service) withHistory(pattern string, h http.HandlerFunc) http.HandlerFunc {
	back, ok := lookback[pattern]
	if !ok {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		p := &params{r: r}
		at := p.time("at", p.time("to", s.now()))
		from := p.time("from", at.Add(-back))
		began, err := s.Store.Began(r.Context())
		if p.err != nil || err != nil || !from.Before(began) {
			h(w, r)
			return
		}
		rec := &bufferedJSON{ResponseWriter: w, status: http.StatusOK}
		h(rec, r)
		body := rec.buf.Bytes()
		if rec.status == http.StatusOK && len(body) > 1 && body[0] == '{' {
			note, _ := json.Marshal(History{Begins: began, AnalysedFrom: from.UTC(),
				Note: "the ledger's history begins after the start of the analysed span: earlier figures are zeros, not measurements. " +
					"Load history first (usagectl simulate --backfill 30d on a test stack; events may be up to 35 days late), or ask about a later span."})
			sep := []byte(",")
			if bytes.HasPrefix(bytes.TrimSpace(body[1:]), []byte("}")) {
				sep = nil
			}
			body = append(append(append([]byte(`{"history":`), note...), sep...), body[1:]...)
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	}
}

// bufferedJSON holds a (small) analytics answer so that withHistory can extend it.
type bufferedJSON struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (b *bufferedJSON) WriteHeader(s int)           { b.status = s }
func (b *bufferedJSON) Write(p []byte) (int, error) { return b.buf.Write(p) }
