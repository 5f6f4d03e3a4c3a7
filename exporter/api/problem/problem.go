// Package problem writes RFC 9457 problem details (application/problem+json).
package problem

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Problem types of the store's refusals (the type URI identifies the problem; it need not
// resolve).
const (
	TypeInsufficientStorage = "https://github.com/usagemeter/usagemeter/blob/main/docs/operator-guide.md#a-full-disk"
	TypeStoreFailed         = "https://github.com/usagemeter/usagemeter/blob/main/docs/operator-guide.md#a-failed-write"
)

// FieldError locates one bad field of one event in a request.
type FieldError struct {
	Index  int    `json:"index"`
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// Details is an RFC 9457 problem document.
type Details struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

// Write sends p with its status code.
func Write(w http.ResponseWriter, p Details) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Error sends a problem with only a status and a detail message.
func Error(w http.ResponseWriter, status int, detail string) {
	Write(w, Details{Status: status, Detail: detail})
}

// TypeUnknownTenant is the problem type of a read naming a tenant that no event has named and
// the configuration does not list.
const TypeUnknownTenant = "https://usagemeter.dev/problems/unknown-tenant"

// UnknownTenant answers 404 for reads naming tenants never seen and not configured: without it a
// typo would look like a tenant with no usage. Events for new tenants are accepted as ever.
func UnknownTenant(w http.ResponseWriter, tenants ...string) {
	what := fmt.Sprintf("tenant %q has", tenants[0])
	if len(tenants) > 1 {
		what = fmt.Sprintf("tenants %q have", tenants)
	}
	Write(w, Details{Type: TypeUnknownTenant, Title: "Unknown tenant", Status: http.StatusNotFound,
		Detail: what + " never been seen (no stored event names it) and is not configured (tenants: in the config file); check the spelling"})
}
