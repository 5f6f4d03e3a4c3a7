package analytics

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
)

// TestAnswersSayWhenHistoryIsShort: on a store whose history begins after the analysed span
// starts (a fresh stack), the answer says so and when the history begins; with the span inside
// the history there is no such note (issue #19: zeros without a word on a fresh stack).
func TestAnswersSayWhenHistoryIsShort(t *testing.T) {
	st := ledgertest.Open(t)
	ledgertest.Load(t, st, ledgertest.E("user.login", d(11, 20, 9), "tenant", "acme", "user", "ann"))
	srv, _ := server(t, st)
	began, err := st.Began(t.Context())
	if err != nil || !began.Equal(d(11, 20, 9)) {
		t.Fatalf("began %s %v", began, err)
	}
	get := func(path string) map[string]json.RawMessage {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); resp.StatusCode != 200 || err != nil {
			t.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, b)
		}
		return m
	}
	for _, path := range []string{
		"/v1/analytics/engagement?tenant=acme&at=" + d(11, 21, 0).Format(time.RFC3339),
		"/v1/analytics/seasonality?tenant=acme&meter=logins&to=" + d(11, 21, 0).Format(time.RFC3339),
		"/v1/analytics/trends?at=" + d(11, 21, 0).Format(time.RFC3339),
		"/v1/analytics/ingestion?tenant=acme&from=" + d(11, 20, 0).Format(time.RFC3339) + "&to=" + d(11, 21, 0).Format(time.RFC3339),
	} {
		m := get(path)
		var h History
		if err := json.Unmarshal(m["history"], &h); err != nil || !h.Begins.Equal(began) || h.Note == "" || len(m) < 2 {
			t.Errorf("GET %s: history %s (%v), want the history's beginning and a note beside the answer", path, m["history"], err)
		}
	}
	inside := "/v1/analytics/ingestion?tenant=acme&from=" + d(11, 20, 9).Format(time.RFC3339) + "&to=" + d(11, 21, 0).Format(time.RFC3339)
	if m := get(inside); m["history"] != nil {
		t.Errorf("GET %s: a span inside the history has a note: %s", inside, m["history"])
	}
}
