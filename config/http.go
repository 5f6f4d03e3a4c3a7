package config

import (
	"fmt"
	"math"
	"time"
)

// HTTP bounds what one client, or many, can make the exporter hold: time, connections,
// concurrent requests and audit-trail space. Every value is a hard limit with a default sane
// for production; docs/security.md lists each with the metric that shows it being hit.
type HTTP struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included: a body sent too slowly is
	// cut off with 408 and nothing of it is stored.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds a request from the end of its headers to the end of its response.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// ExportWriteTimeout replaces WriteTimeout for streamed responses (report exports,
	// profiles), which legitimately take longer.
	ExportWriteTimeout time.Duration `yaml:"export_write_timeout"`
	// IdleTimeout closes keep-alive connections idle that long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxConnections bounds open connections. At the limit the oldest idle keep-alive
	// connection is closed to make room; without one, the new connection is refused.
	MaxConnections int `yaml:"max_connections"`
	// MaxRequestsInFlight bounds requests served at once; past it: 503 with Retry-After.
	MaxRequestsInFlight int `yaml:"max_requests_in_flight"`
	// MaxRequestsInFlightPerCredential bounds one principal's (API key, token, JWT subject)
	// requests served at once, or one remote IP's when it has no valid credential; past it:
	// 429 with Retry-After.
	MaxRequestsInFlightPerCredential int `yaml:"max_requests_in_flight_per_credential"`
	// DenialAuditRate and DenialAuditBurst are the token bucket of audit entries written for
	// requests refused without a valid credential; the others are counted, not written.
	DenialAuditRate  float64 `yaml:"denial_audit_rate"`
	DenialAuditBurst int     `yaml:"denial_audit_burst"`
	// AuditFieldMaxBytes bounds each text field of an audit entry (path, tenant, reason...);
	// longer values are cut and marked as truncated.
	AuditFieldMaxBytes int `yaml:"audit_field_max_bytes"`
}

// DefaultHTTP returns the HTTP limits used when the config file sets none.
func DefaultHTTP() HTTP {
	return HTTP{
		ReadHeaderTimeout:                10 * time.Second,
		ReadTimeout:                      time.Minute,
		WriteTimeout:                     2 * time.Minute,
		ExportWriteTimeout:               30 * time.Minute,
		IdleTimeout:                      2 * time.Minute,
		MaxHeaderBytes:                   32 << 10,
		MaxConnections:                   1024,
		MaxRequestsInFlight:              256,
		MaxRequestsInFlightPerCredential: 32,
		DenialAuditRate:                  10,
		DenialAuditBurst:                 100,
		AuditFieldMaxBytes:               256,
	}
}

// minHeaderBytes leaves room for a bearer JWT (auth.MaxCredentialBytes is 8 KiB) and the
// ordinary headers beside it.
const minHeaderBytes = 12 << 10

func (h *HTTP) validate(bad func(msg string, path ...any) error) error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"read_header_timeout", h.ReadHeaderTimeout}, {"read_timeout", h.ReadTimeout}, {"write_timeout", h.WriteTimeout},
		{"export_write_timeout", h.ExportWriteTimeout}, {"idle_timeout", h.IdleTimeout},
	} {
		if d.v <= 0 {
			return bad("must be a positive duration (like 30s)", "http", d.name)
		}
	}
	if h.ReadHeaderTimeout > h.ReadTimeout {
		return bad("must not exceed read_timeout, which includes the headers", "http", "read_header_timeout")
	}
	// The write deadline starts when the headers are read, so the body is read within it.
	if h.WriteTimeout < h.ReadTimeout {
		return bad("must be at least read_timeout: the body is read within the write deadline", "http", "write_timeout")
	}
	if h.ExportWriteTimeout < h.WriteTimeout {
		return bad("must be at least write_timeout", "http", "export_write_timeout")
	}
	if h.MaxHeaderBytes < minHeaderBytes {
		return bad(fmt.Sprintf("must be at least %d (a bearer token alone may take 8 KiB)", minHeaderBytes), "http", "max_header_bytes")
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"max_connections", h.MaxConnections}, {"max_requests_in_flight", h.MaxRequestsInFlight},
		{"max_requests_in_flight_per_credential", h.MaxRequestsInFlightPerCredential}, {"denial_audit_burst", h.DenialAuditBurst},
	} {
		if n.v <= 0 {
			return bad("must be positive", "http", n.name)
		}
	}
	if h.MaxRequestsInFlightPerCredential > h.MaxRequestsInFlight {
		return bad("must not exceed max_requests_in_flight", "http", "max_requests_in_flight_per_credential")
	}
	if !(h.DenialAuditRate > 0) || math.IsInf(h.DenialAuditRate, 0) {
		return bad("must be a positive number of entries per second", "http", "denial_audit_rate")
	}
	if h.AuditFieldMaxBytes < 32 {
		return bad("must be at least 32", "http", "audit_field_max_bytes")
	}
	return nil
}
