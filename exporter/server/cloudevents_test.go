package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"

	ceevent "github.com/usagemeter/usagemeter/exporter/event"
)

// open builds the whole exporter with no authentication configured (loopback, open mode).
func open(t testing.TB) (*Server, *httptest.Server) { return openWith(t, "") }

// openWith is open with a configuration file ("": the built-in defaults).
func openWith(t testing.TB, config string) (*Server, *httptest.Server) {
	t.Helper()
	dir := t.TempDir()
	addrs := []string{"127.0.0.1:0"}
	opts := Options{Web: &web.FlagConfig{WebListenAddresses: &addrs}, StoragePath: filepath.Join(dir, "data"), Log: &promslog.Config{}}
	if config != "" {
		opts.ConfigFile = filepath.Join(dir, "config.yml")
		if err := os.WriteFile(opts.ConfigFile, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := Build(context.Background(), opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	var h http.Handler = srv.Handler
	if tt, ok := t.(*testing.T); ok {
		h = validating(tt, h) // every request of a test is checked against the OpenAPI document
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return srv, ts
}

// sdkEvent is an ai.tokens event built with the official CloudEvents SDK, as a new user would.
func sdkEvent(t testing.TB, id string, at time.Time, input int) cloudevents.Event {
	ev := cloudevents.NewEvent()
	ev.SetID(id)
	ev.SetSource("chat-service")
	ev.SetType("ai.tokens")
	ev.SetTime(at)
	if err := ev.SetData(cloudevents.ApplicationJSON, map[string]any{
		"tenant": "acme", "user": "alice", "feature": "chat", "model": "gpt-large",
		"input_tokens": input, "output_tokens": 1,
	}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// send sends ev with the SDK's HTTP client in the mode ctx asks for and returns the HTTP status.
func send(t testing.TB, c cloudevents.Client, ctx context.Context, ev cloudevents.Event) (int, error) {
	t.Helper()
	res := c.Send(ctx, ev)
	var hr *cehttp.Result
	if !errors.As(res, &hr) {
		return 0, fmt.Errorf("no HTTP result: %v", res)
	}
	if !cloudevents.IsACK(res) {
		return hr.StatusCode, res
	}
	return hr.StatusCode, nil
}

// TestCloudEventsSDKBothModes: the official Go SDK, unchanged, ingests in binary mode (its
// default) and in structured mode; a nanosecond time and extension attributes survive into the
// ledger; a resent event counts once; a bad event is refused with the same problem as in
// structured mode.
func TestCloudEventsSDKBothModes(t *testing.T) {
	srv, ts := open(t)
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(ts.URL + "/v1/events"))
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	nano := hour.Add(59*time.Minute + 59*time.Second + 999999999) // the last nanosecond of the hour
	binaryCtx := binding.WithForceBinary(context.Background())
	structuredCtx := binding.WithForceStructured(context.Background())

	withExt := sdkEvent(t, "b-2", hour.Add(time.Minute), 20)
	withExt.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	withExt.SetExtension("region", "eu-west-1")
	for _, s := range []struct {
		name string
		ctx  context.Context
		ev   cloudevents.Event
	}{
		{"default (binary)", context.Background(), sdkEvent(t, "b-1", nano, 10)},
		{"binary with extensions", binaryCtx, withExt},
		{"structured", structuredCtx, sdkEvent(t, "s-1", nano, 100)},
		{"structured with extensions", structuredCtx, func() cloudevents.Event {
			ev := sdkEvent(t, "s-2", hour.Add(time.Minute), 200)
			ev.SetExtension("region", "eu-west-1")
			return ev
		}()},
		{"binary resend", binaryCtx, sdkEvent(t, "b-1", nano, 10)},
		{"structured resend", structuredCtx, sdkEvent(t, "s-1", nano, 100)},
	} {
		if code, err := send(t, c, s.ctx, s.ev); err != nil || code != http.StatusAccepted {
			t.Fatalf("%s: status %d, %v", s.name, code, err)
		}
	}

	// Exact totals: each event once, in the hour of its own time (the last nanosecond of the
	// hour is still that hour).
	code, body := do(t, ts, "GET", fmt.Sprintf("/v1/usage?tenant=acme&meter=ai_tokens&from=%s&to=%s&group_by=direction&window=hour",
		hour.Format(time.RFC3339), hour.Add(2*time.Hour).Format(time.RFC3339)), "", "", "")
	if code != 200 {
		t.Fatalf("usage: %d %s", code, body)
	}
	var usage struct {
		Rows []struct {
			Group map[string]string `json:"group"`
			Start time.Time         `json:"window_start"`
			Value int64             `json:"value"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(body), &usage); err != nil {
		t.Fatal(err)
	}
	var input int64
	for _, r := range usage.Rows {
		if r.Group["direction"] == "input" {
			if !r.Start.Equal(hour) {
				t.Errorf("input tokens in the window starting %v, want %v: %s", r.Start, hour, body)
			}
			input += r.Value
		}
	}
	if input != 330 {
		t.Errorf("input tokens = %d, want 330 (10+20+100+200, resends once): %s", input, body)
	}

	// The ledger keeps the nanoseconds and the extensions.
	stored := map[string]string{}
	err = srv.Store.RawEvents(context.Background(), time.Time{}, time.Time{}, func(ev *ceevent.Event) error {
		js, err := ceevent.StoredJSON(ev.Raw, ev.Time)
		stored[ev.ID] = string(js)
		if ev.ID == "b-1" && !ev.Time.Equal(nano) {
			t.Errorf("b-1 stored at %v, want %v", ev.Time.Format(time.RFC3339Nano), nano.Format(time.RFC3339Nano))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 4 {
		t.Errorf("%d events stored, want 4: %v", len(stored), stored)
	}
	if !strings.Contains(stored["b-2"], `"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"`) ||
		!strings.Contains(stored["b-2"], `"region":"eu-west-1"`) || !strings.Contains(stored["s-2"], `"region":"eu-west-1"`) {
		t.Errorf("extensions lost: b-2 %s, s-2 %s", stored["b-2"], stored["s-2"])
	}

	// A bad event in binary mode is refused with the problem structured mode gives: 400, the
	// field named, nothing stored.
	bad := sdkEvent(t, "b-bad", hour, 1)
	_ = bad.SetData(cloudevents.ApplicationJSON, map[string]any{"tenant": "ac me", "user": "alice", "feature": "chat", "model": "m", "input_tokens": 1, "output_tokens": 1})
	for _, ctx := range []context.Context{binaryCtx, structuredCtx} {
		if code, err := send(t, c, ctx, bad); code != http.StatusBadRequest || err == nil {
			t.Errorf("bad event: status %d, %v; want 400", code, err)
		}
	}
	req, _ := http.NewRequest("POST", ts.URL+"/v1/events", strings.NewReader(`{"tenant":"ac me","user":"a","feature":"f","model":"m","input_tokens":1,"output_tokens":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", "raw-bad")
	req.Header.Set("ce-source", "svc")
	req.Header.Set("ce-type", "ai.tokens")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		Type, Title string
		Status      int
		Errors      []struct {
			Index  int
			Field  string
			Detail string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/problem+json" || p.Type != "https://usagemeter.dev/problems/invalid" ||
		len(p.Errors) != 1 || p.Errors[0].Field != "data.tenant" {
		t.Errorf("binary-mode problem: %d %s %+v", resp.StatusCode, resp.Header.Get("Content-Type"), p)
	}
}

// TestBinaryModeLimits: binary mode is bound by the same body limit as the other modes.
func TestBinaryModeLimits(t *testing.T) {
	_, ts := open(t)
	big := `{"tenant":"acme","pad":"` + strings.Repeat("x", 17<<20) + `"}`
	req, _ := http.NewRequest("POST", ts.URL+"/v1/events", strings.NewReader(big))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("ce-specversion", "1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
}

// BenchmarkSDKIngest is the official SDK's ingest rate against the whole exporter (HTTP, decode,
// policy, durable commit), one event per request, in binary mode (the SDK's default) and in
// structured mode. The modes alternate request by request against the same exporter, so that both
// see the same machine: it reports each mode's events/s and binary's time per event over
// structured's (binary/structured).
func BenchmarkSDKIngest(b *testing.B) {
	_, ts := open(b)
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(ts.URL + "/v1/events"))
	if err != nil {
		b.Fatal(err)
	}
	at := time.Now().UTC().Add(-time.Minute)
	modes := [2]context.Context{binding.WithForceBinary(context.Background()), binding.WithForceStructured(context.Background())}
	var spent [2]time.Duration
	n := 0
	for b.Loop() {
		for m, ctx := range modes {
			ev := sdkEvent(b, fmt.Sprintf("%d-%d", m, n), at, n)
			start := time.Now()
			if code, err := send(b, c, ctx, ev); err != nil || code != http.StatusAccepted {
				b.Fatalf("status %d, %v", code, err)
			}
			spent[m] += time.Since(start)
		}
		n++
	}
	b.ReportMetric(float64(n)/spent[0].Seconds(), "binary-events/s")
	b.ReportMetric(float64(n)/spent[1].Seconds(), "structured-events/s")
	b.ReportMetric(spent[0].Seconds()/spent[1].Seconds(), "binary/structured")
}
