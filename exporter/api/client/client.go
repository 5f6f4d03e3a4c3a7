// Package client is the command line's client of the exporter's HTTP API: the --url and
// --token flags, bearer authentication, the generated client (usageapi) that builds every
// request, problem documents turned into errors, and answers streamed to standard output or a
// file.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/usagemeter/usagemeter/exporter/api/openapi/usageapi"
)

// Client calls one exporter.
type Client struct {
	Base, Token string
	// Out receives answers (and the "wrote FILE" line when an answer goes to a file).
	Out  io.Writer
	HTTP http.Client
}

// AddFlags adds --url and --token (also USAGEMETER_URL and USAGEMETER_TOKEN) to a command.
func (c *Client) AddFlags(cmd *kingpin.CmdClause) {
	cmd.Flag("url", "exporter base URL").Envar("USAGEMETER_URL").Default("http://localhost:9477").StringVar(&c.Base)
	cmd.Flag("token", "API token (sent as a bearer token)").Envar("USAGEMETER_TOKEN").StringVar(&c.Token)
}

// API returns the generated client of the exporter's API (usageapi), at --url, sending --token.
func (c *Client) API() (*usageapi.Client, error) {
	api, err := usageapi.NewClient(strings.TrimRight(c.Base, "/"), usageapi.WithHTTPClient(&c.HTTP),
		usageapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			if c.Token != "" {
				req.Header.Set("Authorization", "Bearer "+c.Token)
			}
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("--url %q: %w", c.Base, err)
	}
	return api, nil
}

// Call sends one request through the generated client and copies a successful answer to Out, or
// to the file dest when dest is neither "" nor "-". A problem document (RFC 9457) becomes the
// error. Ctrl-C cancels the request.
func (c *Client) Call(dest string, send func(ctx context.Context, api *usageapi.Client) (*http.Response, error)) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	api, err := c.API()
	if err != nil {
		return err
	}
	resp, err := send(ctx, api)
	if err != nil {
		return err // net/http's errors name the method and URL
	}
	defer resp.Body.Close()
	method, path := resp.Request.Method, resp.Request.URL.Path
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var p struct{ Title, Detail string }
		if json.Unmarshal(msg, &p) == nil && (p.Detail != "" || p.Title != "") {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, p.Detail)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if dest != "" && dest != "-" {
		f, err := os.Create(dest)
		if err != nil {
			return fmt.Errorf("write %s: %w", dest, err)
		}
		n, err := io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", dest, err)
		}
		_, err = fmt.Fprintf(c.Out, "wrote %s (%d bytes)\n", dest, n)
		return err
	}
	if _, err := io.Copy(c.Out, resp.Body); err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	return nil
}

// Opt returns a pointer to s, or nil when s is empty: an optional parameter of the generated client.
func Opt[T ~string](s string) *T {
	if s == "" {
		return nil
	}
	v := T(s)
	return &v
}
