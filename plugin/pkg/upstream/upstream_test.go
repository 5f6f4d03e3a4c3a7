package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/problem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"title":"Forbidden","status":403,"detail":"tenant \"x\" is not among the principal's tenants"}`))
	})
	srv := httptest.NewServer(mux) // an unknown path gets the mux's plain 404
	defer srv.Close()
	c, err := New("exporter", srv.URL, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	err = c.GetJSON(context.Background(), "/v1/problem", nil, &v)
	if Status(err) != 403 || !strings.Contains(err.Error(), "not among the principal's tenants") || IsNotServed(err) {
		t.Errorf("problem: %v", err)
	}
	err = c.GetJSON(context.Background(), "/v1/analytics/forecast", nil, &v)
	if !IsNotServed(err) || !strings.Contains(err.Error(), "not served (404)") {
		t.Errorf("unknown route: %v", err)
	}
	for _, bad := range []string{"", "localhost:9477", "/v1"} {
		if _, err := New("exporter", bad, "", nil); err == nil {
			t.Errorf("New(%q): accepted", bad)
		}
	}
}

func TestSample(t *testing.T) {
	ts, v, err := Sample([2]any{1762560000.5, "1.25"})
	if err != nil || v != 1.25 || !ts.Equal(time.UnixMilli(1762560000500).UTC()) {
		t.Errorf("sample: %v %v %v", ts, v, err)
	}
	if _, _, err := Sample([2]any{"x", "1"}); err == nil {
		t.Error("a string timestamp was accepted")
	}
	if _, _, err := Sample([2]any{1.0, "NaNx"}); err == nil {
		t.Error("a bad value was accepted")
	}
}
