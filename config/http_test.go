package config

import (
	"strings"
	"testing"
	"time"
)

func TestHTTPDefaultsAndOverrides(t *testing.T) {
	c, err := Parse([]byte("ingest:\n  max_batch_events: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP != DefaultHTTP() {
		t.Errorf("defaults not applied: %+v", c.HTTP)
	}
	c, err = Parse([]byte("http:\n  read_timeout: 2s\n  write_timeout: 3s\n  read_header_timeout: 1s\n  max_connections: 7\n  denial_audit_rate: 0.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultHTTP()
	want.ReadTimeout, want.WriteTimeout, want.ReadHeaderTimeout, want.MaxConnections, want.DenialAuditRate = 2*time.Second, 3*time.Second, time.Second, 7, 0.5
	if c.HTTP != want {
		t.Errorf("got %+v\nwant %+v (unset keys keep their defaults)", c.HTTP, want)
	}
}

func TestHTTPErrorsNameLineField(t *testing.T) {
	cases := []struct{ src, want string }{
		{"http:\n  read_timeout: 0s\n", "2: http.read_timeout: must be a positive duration"},
		{"http:\n  idle_timeout: soon\n", `2: http.idle_timeout: "soon" is a string, want a duration`},
		{"http:\n  read_timeout: 3m\n", "http.write_timeout: must be at least read_timeout"},
		{"http:\n  read_header_timeout: 2m\n", "http.read_header_timeout: must not exceed read_timeout"},
		{"http:\n  export_write_timeout: 1m\n", "http.export_write_timeout: must be at least write_timeout"},
		{"http:\n  max_header_bytes: 1024\n", "http.max_header_bytes: must be at least 12288"},
		{"http:\n  max_connections: 0\n", "http.max_connections: must be positive"},
		{"http:\n  max_requests_in_flight: -1\n", "http.max_requests_in_flight: must be positive"},
		{"http:\n  max_requests_in_flight_per_credential: 1000\n", "must not exceed max_requests_in_flight"},
		{"http:\n  denial_audit_rate: 0\n", "http.denial_audit_rate: must be a positive number"},
		{"http:\n  denial_audit_rate: .inf\n", "http.denial_audit_rate: must be a positive number"},
		{"http:\n  denial_audit_burst: 0\n", "http.denial_audit_burst: must be positive"},
		{"http:\n  audit_field_max_bytes: 8\n", "http.audit_field_max_bytes: must be at least 32"},
		{"http:\n  max_conections: 8\n", "field max_conections not found"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want it to contain %q", c.src, err, c.want)
		}
	}
}
