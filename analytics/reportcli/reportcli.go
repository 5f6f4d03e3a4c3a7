// Package reportcli adds `usagectl report ...`: usage reports, the executive summary, the
// compliance report and reports from a definition file, in CSV, JSON, PDF or XLSX. It talks to
// the exporter's HTTP API (the same authorization and audit as any client) and streams the
// answer to a file or stdout as it arrives.
package reportcli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	apiclient "github.com/usagemeter/usagemeter/exporter/api/client"
	"github.com/usagemeter/usagemeter/exporter/api/openapi/usageapi"
)

// Register adds the `report` command to app, writing to stdout unless --output is given.
func Register(app *kingpin.Application) { RegisterTo(app, os.Stdout) }

// RegisterTo is Register with another default output (tests).
func RegisterTo(app *kingpin.Application, stdout io.Writer) {
	c := &client{Client: apiclient.Client{Out: stdout}}
	cmd := app.Command("report", "Reports: usage, executive summary, compliance, or a definition file (CSV, JSON, PDF, XLSX).")
	c.AddFlags(cmd)
	cmd.Flag("output", "file to write (default stdout)").Short('o').StringVar(&c.output)

	var format, tenant, from, to, month, last, window string
	var formatSet bool
	var meters, groupBy, filters []string
	periodFlags := func(cc *kingpin.CmdClause) {
		cc.Flag("from", "period start, RFC 3339 on an hour").StringVar(&from)
		cc.Flag("to", "period end, RFC 3339 on an hour").StringVar(&to)
		cc.Flag("month", "a calendar month, YYYY-MM").StringVar(&month)
		cc.Flag("last", "a trailing period: 24h, 7d, 30d, month (the last complete month), mtd, ytd").StringVar(&last)
	}
	// filterValues turns --filter model=a,b into the API's filter=model:a|b.
	filterValues := func() *[]string {
		if len(filters) == 0 {
			return nil
		}
		out := make([]string, 0, len(filters))
		for _, f := range filters {
			dim, vals, ok := strings.Cut(f, "=")
			if !ok {
				dim, vals, _ = strings.Cut(f, ":")
			}
			out = append(out, dim+":"+strings.ReplaceAll(vals, ",", "|"))
		}
		return &out
	}
	list := func(v []string) *[]string {
		if len(v) == 0 {
			return nil
		}
		return &v
	}
	groups := func() *string { return opt(strings.Join(groupBy, ",")) }
	// period reads --from and --to (RFC 3339).
	period := func() (from_, to_ *time.Time, err error) {
		if from_, err = parseTime("--from", from); err == nil {
			to_, err = parseTime("--to", to)
		}
		return from_, to_, err
	}

	usage := cmd.Command("usage", "Usage report: every meter (or --meter), every tenant (or --tenant), by window and groups.")
	usage.Flag("format", "csv, json, pdf or xlsx").Default("csv").IsSetByUser(&formatSet).EnumVar(&format, "csv", "json", "pdf", "xlsx")
	usage.Flag("tenant", "one tenant (default: all)").StringVar(&tenant)
	usage.Flag("meter", "a meter (repeatable; default: all)").StringsVar(&meters)
	usage.Flag("group-by", "dimensions to group by (repeatable or comma list), e.g. model,user").StringsVar(&groupBy)
	usage.Flag("window", "hour, day, month or none").Default("month").EnumVar(&window, "hour", "day", "month", "none")
	usage.Flag("filter", "keep rows whose dimension has one of the values: model=gpt-large,gpt-small (repeatable)").StringsVar(&filters)
	periodFlags(usage)
	usage.Action(func(*kingpin.ParseContext) error {
		if err := c.pickFormat(format, formatSet); err != nil {
			return err
		}
		format = c.format
		from, to, err := period()
		if err != nil {
			return err
		}
		return c.Call(c.output, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.GetV1ReportsUsage(ctx, &usageapi.GetV1ReportsUsageParams{
				Format: apiclient.Opt[usageapi.GetV1ReportsUsageParamsFormat](format), Tenant: opt(tenant),
				Meter: list(meters), GroupBy: groups(), Window: apiclient.Opt[usageapi.GetV1ReportsUsageParamsWindow](window),
				Filter: filterValues(), From: from, To: to, Month: opt(month), Last: opt(last)})
		})
	})

	exec := cmd.Command("executive", "Executive summary of the last 30 days: KPIs, trends, top movers, forecast, insights (one PDF page).")
	exec.Flag("format", "pdf, csv, json or xlsx").Default("pdf").IsSetByUser(&formatSet).EnumVar(&format, "csv", "json", "pdf", "xlsx")
	exec.Flag("tenant", "one tenant (default: all)").StringVar(&tenant)
	exec.Action(func(*kingpin.ParseContext) error {
		if err := c.pickFormat(format, formatSet); err != nil {
			return err
		}
		format = c.format
		return c.Call(c.output, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.GetV1ReportsExecutive(ctx, &usageapi.GetV1ReportsExecutiveParams{
				Format: apiclient.Opt[usageapi.GetV1ReportsExecutiveParamsFormat](format), Tenant: opt(tenant)})
		})
	})

	comp := cmd.Command("compliance", "Compliance report: data held, retention, the access audit of the period and the audit chain's verification.")
	comp.Flag("format", "pdf, csv, json or xlsx").Default("pdf").IsSetByUser(&formatSet).EnumVar(&format, "csv", "json", "pdf", "xlsx")
	comp.Flag("tenant", "one tenant (default: all)").StringVar(&tenant)
	periodFlags(comp)
	comp.Action(func(*kingpin.ParseContext) error {
		if err := c.pickFormat(format, formatSet); err != nil {
			return err
		}
		format = c.format
		from, to, err := period()
		if err != nil {
			return err
		}
		return c.Call(c.output, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.GetV1ReportsCompliance(ctx, &usageapi.GetV1ReportsComplianceParams{
				Format: apiclient.Opt[usageapi.GetV1ReportsComplianceParamsFormat](format), Tenant: opt(tenant),
				From: from, To: to, Month: opt(month), Last: opt(last)})
		})
	})

	var file string
	run := cmd.Command("run", "Run a report definition file (YAML or JSON: kind, meters, group_by, window, period, filters, tenants, format).")
	run.Arg("definition", "the definition file, - for stdin").Required().StringVar(&file)
	run.Flag("format", "override the definition's format").IsSetByUser(&formatSet).EnumVar(&format, "csv", "json", "pdf", "xlsx")
	run.Flag("tenant", "the definition's single tenant (needed by tenant-scoped tokens)").StringVar(&tenant)
	run.Action(func(*kingpin.ParseContext) error {
		if err := c.pickFormat(format, formatSet); err != nil {
			return err
		}
		format = c.format
		var body []byte
		var err error
		if file == "-" {
			body, err = io.ReadAll(os.Stdin)
		} else {
			body, err = os.ReadFile(file)
		}
		if err != nil {
			return fmt.Errorf("reading the definition: %w", err)
		}
		return c.Call(c.output, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.PostV1ReportsWithBody(ctx, &usageapi.PostV1ReportsParams{Format: apiclient.Opt[usageapi.PostV1ReportsParamsFormat](format), Tenant: opt(tenant)},
				"application/yaml", bytes.NewReader(body))
		})
	})
}

// client streams reports through the shared API client (the generated usageapi), to --output
// or standard output.
type client struct {
	apiclient.Client
	output string
	format string // the format asked for, after pickFormat
}

// opt is an optional string parameter: nil when empty.
func opt(s string) *string { return apiclient.Opt[string](s) }

// parseTime reads an optional RFC 3339 flag.
func parseTime(flag, s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-11-01T00:00:00Z", flag, s)
	}
	return &t, nil
}

// pickFormat reconciles --format with the output file's extension: without --format, -o
// report.xlsx asks for XLSX (a report definition's own format included); a --format that
// contradicts the extension is refused rather than writing XLSX into report.csv.
func (c *client) pickFormat(format string, set bool) error {
	ext := strings.TrimPrefix(strings.ToLower(filepath.Ext(c.output)), ".")
	known := ext == "csv" || ext == "json" || ext == "pdf" || ext == "xlsx"
	switch {
	case !known:
		c.format = format
	case !set:
		c.format = ext
	case format != ext:
		return fmt.Errorf("--format %s but --output %s: give the file a .%s name, or drop --format to write %s", format, c.output, format, strings.ToUpper(ext))
	default:
		c.format = format
	}
	return nil
}
