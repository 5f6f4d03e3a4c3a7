package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/usagemeter/usagemeter/exporter/backup"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/usagemeter/usagemeter/exporter/api/openapi"
	"github.com/usagemeter/usagemeter/exporter/api/openapi/spec"
)

// outsideTheGuard are the routes Build registers on the mux itself rather than as guarded routes:
// /metrics (protected by the web config) and the landing page. TestEveryRouteIsDocumented checks
// they answer, so that this list cannot outlive them.
var outsideTheGuard = []string{"GET /metrics", "GET /"}

var loadDocument = sync.OnceValues(func() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(context.Background())
})

// TestEveryRouteIsDocumented walks every route the exporter registers and every operation of the
// OpenAPI document (exporter/api/openapi/openapi.json): each route is documented, and the
// document names no route that does not exist.
func TestEveryRouteIsDocumented(t *testing.T) {
	srv, ts := open(t)
	doc, err := loadDocument()
	if err != nil {
		t.Fatal(err)
	}
	registered := slices.Clone(outsideTheGuard)
	for _, rt := range srv.Routes {
		registered = append(registered, rt.Method+" "+rt.Pattern)
	}
	for _, r := range outsideTheGuard {
		method, path, _ := strings.Cut(r, " ")
		if code, body := do(t, ts, method, path, "", "", ""); code != 200 {
			t.Errorf("%s answers %d: %.200s", r, code, body)
		}
	}
	documented := spec.Routes(doc)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is registered but missing from the OpenAPI document: add it to the table in exporter/api/openapi/spec/spec.go, then run `go generate ./exporter/api/openapi`", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(registered, r) {
			t.Errorf("the OpenAPI document names %s, which the exporter does not serve", r)
		}
	}
	// The served document is the committed one.
	code, body := do(t, ts, "GET", "/v1/openapi.json", "", "", "")
	if code != 200 || body != string(openapi.Document()) {
		t.Errorf("GET /v1/openapi.json: %d, %d bytes; want the committed document", code, len(body))
	}
}

// The media types the validator must read as JSON or text beyond its defaults.
func init() {
	for _, mt := range []string{"application/cloudevents+json", "application/cloudevents-batch+json"} {
		openapi3filter.RegisterBodyDecoder(mt, openapi3filter.JSONBodyDecoder)
	}
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	for _, mt := range []string{"application/pdf", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", backup.ContentType} {
		openapi3filter.RegisterBodyDecoder(mt, openapi3filter.FileBodyDecoder)
	}
}

// validating wraps the exporter's handler so that every request a test makes, and every answer,
// is checked against the OpenAPI document: a response that does not match its operation's schema
// fails the test, and so does a request the document forbids that the exporter accepted (a
// request it refuses may well break the document's rules: that is what tests of bad input do).
func validating(t *testing.T, h http.Handler) http.Handler {
	v, err := validatingWith(t.Errorf, h)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func validatingWith(errorf func(format string, args ...any), h http.Handler) (http.Handler, error) {
	v, err := newValidator(errorf)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &teeRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		v.check(r, body, rec.status, rec.Header(), rec.body.Bytes())
	}), nil
}

// validator checks exchanges against the OpenAPI document.
type validator struct {
	router interface {
		FindRoute(*http.Request) (*routers.Route, map[string]string, error)
	}
	errorf func(format string, args ...any)
}

func newValidator(errorf func(format string, args ...any)) (*validator, error) {
	doc, err := loadDocument()
	if err != nil {
		return nil, err
	}
	copied := *doc
	copied.Servers = nil // any host
	router, err := legacy.NewRouter(&copied)
	if err != nil {
		return nil, err
	}
	return &validator{router: router, errorf: errorf}, nil
}

// check validates one request and its answer. A request the document forbids is reported only
// when the exporter accepted it; an answer that breaks its operation's schema always is.
func (v *validator) check(r *http.Request, reqBody []byte, status int, header http.Header, body []byte) {
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		v.errorf("OpenAPI: %s %s has no operation in the document: %v", r.Method, r.URL.Path, err)
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	req := r.Clone(r.Context())
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(r.Context(), in)
	if reqErr != nil && status < 300 {
		v.errorf("OpenAPI: %s %s was accepted (%d) but the document forbids it: %v", r.Method, r.URL, status, reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: opts}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
		v.errorf("OpenAPI: the answer to %s %s (%d, %s) does not match the document: %v\n%.500s", r.Method, r.URL, status, header.Get("Content-Type"), err, body)
	}
}

// validatingTransport checks every exchange of an HTTP client against the OpenAPI document: the
// end-to-end tests, which talk to a usage-exporter process, send their requests through it.
type validatingTransport struct {
	v    *validator
	next http.RoundTripper
}

func (t *validatingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var reqBody []byte
	if r.Body != nil {
		reqBody, _ = io.ReadAll(r.Body)
		r.Body.Close()
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err == nil { // a cut-off answer (the exporter was killed) is no answer to check
		t.v.check(r, reqBody, resp.StatusCode, resp.Header, body)
	}
	return resp, nil
}

// ValidateClient makes http.DefaultClient, which the end-to-end tests use, check every exchange
// against the OpenAPI document for the rest of the test.
func ValidateClient(t *testing.T) {
	v, err := newValidator(t.Errorf)
	if err != nil {
		t.Fatal(err)
	}
	prev := http.DefaultClient.Transport
	http.DefaultClient.Transport = &validatingTransport{v: v, next: http.DefaultTransport}
	t.Cleanup(func() { http.DefaultClient.Transport = prev })
}

// teeRecorder passes an answer through and keeps a copy.
type teeRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *teeRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *teeRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *teeRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *teeRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// TestValidatorCatchesMismatches: the validating handler can fail. An answer that breaks its
// schema, and an accepted request the document forbids, are both reported.
func TestValidatorCatchesMismatches(t *testing.T) {
	for _, c := range []struct {
		name, method, path, body string
		handler                  http.HandlerFunc
	}{
		{"bad answer", "GET", "/v1/meters", "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"meters":"not a list"}`)
		}},
		{"forbidden request accepted", "GET", "/v1/usage?meter=m", "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"meter": "m", "unit": "", "kind": "flow", "tenant": "t", "from": "2026-01-01T00:00:00Z", "to": "2026-01-01T01:00:00Z", "rows": []any{}})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var failures []string
			h, err := validatingWith(func(f string, args ...any) { failures = append(failures, fmt.Sprintf(f, args...)) }, c.handler)
			if err != nil {
				t.Fatal(err)
			}
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
			if len(failures) == 0 {
				t.Errorf("no OpenAPI failure reported")
			}
		})
	}
}
