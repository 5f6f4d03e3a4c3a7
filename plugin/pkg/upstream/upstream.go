// Package upstream is the plugin's HTTP client for the usagemeter services it reads: the
// exporter API (usage, quotas, audit), billing and analytics (served by the same exporter
// process under /v1/invoices, /v1/analytics, /v1/reports) and VictoriaMetrics' Prometheus API.
// It only moves bytes and decodes JSON; turning answers into frames is the datasource's job.
// Requests to the exporter are built by the client generated from its OpenAPI document
// (usageapi); VictoriaMetrics is read with Do.
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/exporter/api/openapi/usageapi"
)

// Error is a non-2xx answer from a service. Status 404 on a route the service does not serve
// means that part of usagemeter is not deployed (or not wired yet) there.
type Error struct {
	Service string
	Path    string
	Status  int
	Detail  string
}

func (e *Error) Error() string {
	if e.Status == http.StatusNotFound && e.Detail == "" {
		return fmt.Sprintf("%s %s: not served (404): this endpoint is not available on the configured server", e.Service, e.Path)
	}
	return fmt.Sprintf("%s %s: %d %s", e.Service, e.Path, e.Status, e.Detail)
}

// Client calls one base URL with an optional bearer token.
type Client struct {
	Service string // for error messages: "exporter", "victoriametrics"
	Base    *url.URL
	Token   string
	HTTP    *http.Client
	// API is the generated client of usagemeter's HTTP API (exporter/api/openapi/usageapi):
	// every request to the exporter is built by it.
	API *usageapi.Client
}

// New parses base and builds a client. An empty base is an error: the setting is required.
func New(service, base, token string, hc *http.Client) (*Client, error) {
	if base == "" {
		return nil, fmt.Errorf("%s URL: required", service)
	}
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%s URL %q: want an absolute http(s) URL", service, base)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	c := &Client{Service: service, Base: u, Token: token, HTTP: hc}
	c.API, err = usageapi.NewClient(u.String(), usageapi.WithHTTPClient(hc),
		usageapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			if c.Token != "" {
				req.Header.Set("Authorization", "Bearer "+c.Token)
			}
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("%s URL %q: %w", service, base, err)
	}
	return c, nil
}

// Call sends a request that the generated client (usageapi) built, and returns the response when
// it is 2xx, as Do does; anything else becomes an *Error carrying the problem's detail.
func (c *Client) Call(ctx context.Context, send func(ctx context.Context, api *usageapi.Client) (*http.Response, error)) (*http.Response, error) {
	resp, err := send(ctx, c.API)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Service, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, &Error{Service: c.Service, Path: c.path(resp), Status: resp.StatusCode, Detail: problemDetail(resp)}
}

// CallJSON decodes the JSON answer of Call into v.
func (c *Client) CallJSON(ctx context.Context, v any, send func(ctx context.Context, api *usageapi.Client) (*http.Response, error)) error {
	resp, err := c.Call(ctx, send)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", c.Service, c.path(resp), err)
	}
	return nil
}

// path is the API path a response answers, without the base URL's own path.
func (c *Client) path(resp *http.Response) string {
	if resp.Request == nil {
		return ""
	}
	return strings.TrimPrefix(resp.Request.URL.Path, c.Base.Path)
}

// Do sends a request for path?query and returns the response when it is 2xx; the caller closes
// the body. Anything else becomes an *Error carrying the problem's detail.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body io.Reader, header http.Header) (*http.Response, error) {
	u := *c.Base
	u.Path = c.Base.Path + path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.Service, path, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.Service, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, &Error{Service: c.Service, Path: path, Status: resp.StatusCode, Detail: problemDetail(resp)}
}

// problemDetail extracts an RFC 9457 problem's detail (or the first bytes of any other body).
func problemDetail(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Error  string `json:"error"` // VictoriaMetrics
	}
	if json.Unmarshal(b, &p) == nil {
		switch {
		case p.Detail != "":
			return p.Detail
		case p.Error != "":
			return p.Error
		case p.Title != "":
			return p.Title
		}
	}
	// A 404 from a mux with no such route has a plain-text body that says nothing useful.
	if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(strings.TrimSpace(string(b)), "404 page not found") {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// GetJSON decodes the JSON answer of a GET into v.
func (c *Client) GetJSON(ctx context.Context, path string, query url.Values, v any) error {
	resp, err := c.Do(ctx, http.MethodGet, path, query, nil, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", c.Service, path, err)
	}
	return nil
}

// IsNotServed reports whether err is a 404 for a route the server does not have.
func IsNotServed(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound && e.Detail == ""
}

// Status returns the HTTP status of an upstream error, 0 when there was none.
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}
