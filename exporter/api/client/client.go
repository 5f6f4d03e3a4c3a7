// Package client is the command line's client of the exporter's HTTP API: the --url and
// --token flags, bearer authentication, problem documents turned into errors, and answers
// streamed to standard output or a file.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"

	"github.com/alecthomas/kingpin/v2"
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

// Do sends one request (body may be nil) and copies a successful answer to Out, or to the file
// dest when dest is neither "" nor "-". A problem document (RFC 9457) becomes the error.
func (c *Client) Do(method, path string, q url.Values, body io.Reader, contentType, dest string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	u := strings.TrimRight(c.Base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
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
