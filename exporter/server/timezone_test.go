package server

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestUsageTimeZone: GET /v1/usage?tz= gives a tenant its own days: two events an hour apart,
// one UTC day, are two days in Tokyo. A zone that is not IANA's, or the server's own, is a 400.
func TestUsageTimeZone(t *testing.T) {
	_, ts := open(t)
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	var body strings.Builder
	for i, at := range []time.Time{day.Add(14 * time.Hour), day.Add(15 * time.Hour)} { // 23:00 and 00:00 in Tokyo
		fmt.Fprintf(&body, `{"specversion":"1.0","id":"tz-%d","source":"s","type":"user.login","time":%q,"data":{"tenant":"acme","user":"u%d"}}`+"\n",
			i, at.Format(time.RFC3339), i)
	}
	if code, resp := do(t, ts, "POST", "/v1/events", "", "application/x-ndjson", body.String()); code != 202 {
		t.Fatalf("ingest: %d %s", code, resp)
	}
	get := func(tz string) (int, string) {
		return do(t, ts, "GET", "/v1/usage?tenant=acme&meter=logins&window=day&tz="+url.QueryEscape(tz)+
			"&from="+url.QueryEscape(day.Format(time.RFC3339))+"&to="+url.QueryEscape(day.AddDate(0, 0, 2).Format(time.RFC3339)), "", "", "")
	}
	var r struct {
		TZ   string `json:"tz"`
		From string `json:"from"`
		Rows []struct {
			Start string `json:"window_start"`
			Value int64  `json:"value"`
		} `json:"rows"`
	}
	code, resp := get("Asia/Tokyo")
	if code != 200 {
		t.Fatalf("%d %s", code, resp)
	}
	if err := json.Unmarshal([]byte(resp), &r); err != nil {
		t.Fatal(err)
	}
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	next := day.AddDate(0, 0, 1).In(tokyo)
	midnight := time.Date(next.Year(), next.Month(), next.Day(), 0, 0, 0, 0, tokyo).Format(time.RFC3339)
	if r.TZ != "Asia/Tokyo" || !strings.HasSuffix(r.From, "+09:00") || len(r.Rows) != 2 || r.Rows[0].Value != 1 || r.Rows[1].Value != 1 ||
		r.Rows[1].Start != midnight {
		t.Errorf("Tokyo days: %s; want two days of one login, the second from %s", resp, midnight)
	}
	code, resp = get("")
	if err := json.Unmarshal([]byte(resp), &r); err != nil || code != 200 || len(r.Rows) != 1 || r.Rows[0].Value != 2 {
		t.Errorf("UTC days: %d %s", code, resp)
	}
	for _, tz := range []string{"Mars/Olympus", "Local", "Asia/Kolkata"} {
		if code, resp := get(tz); code != 400 || !strings.Contains(resp, "tz") {
			t.Errorf("tz=%s: %d %s, want a 400 about tz", tz, code, resp)
		}
	}
}
