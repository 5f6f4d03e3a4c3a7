// Package config loads the usagemeter configuration file: meters, the plan catalogue, tenants,
// and the sections owned by other packages (auth, billing), which it keeps as YAML nodes so that
// their errors can point at a line of the file too.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Ingest limits.
type Ingest struct {
	MaxBodyBytes   int64 `yaml:"max_body_bytes"`
	MaxBatchEvents int   `yaml:"max_batch_events"`
}

// Metrics settings of /metrics.
type Metrics struct {
	// SeriesLimit caps the series of each usage metric; past it new label sets are folded
	// into one series whose labels are __overflow__.
	SeriesLimit int `yaml:"series_limit"`
	// PerUserLabels adds a pseudonymised user label to metrics of meters that keep users.
	PerUserLabels bool `yaml:"per_user_labels"`
	// UserLabelKeyFile holds the key of the keyed hash that pseudonymises user ids.
	UserLabelKeyFile string `yaml:"user_label_key_file"`
}

// Enforcement of a plan's limits.
const (
	Hard = "hard"
	Soft = "soft"
)

// Plan is an entry of the plan catalogue.
type Plan struct {
	Name         string           `yaml:"name"`
	Description  string           `yaml:"description,omitempty"`
	Enforcement  string           `yaml:"enforcement"`
	WarningRatio float64          `yaml:"warning_ratio"`
	Limits       map[string]int64 `yaml:"limits"`
	// Features allowed on the plan; nil means all.
	Features []string `yaml:"features,omitempty"`
	// UserLimits is the limit of every single user of a tenant, by meter (docs/quotas.md).
	UserLimits map[string]int64 `yaml:"user_limits,omitempty"`
	// FeatureLimits limits the usage of a meter for one feature, by feature then meter.
	FeatureLimits map[string]map[string]int64 `yaml:"feature_limits,omitempty"`
	// Users holds the limits of named users, by user then meter. Only tenants set it: a plan
	// does not know the users of its tenants. They replace UserLimits meter by meter.
	Users map[string]map[string]int64 `yaml:"-"`
}

// UserLimit returns the limit on meter of one user: the user's own, else the tenant's default
// for every user. ok is false when neither is set.
func (p Plan) UserLimit(meter, user string) (limit int64, named, ok bool) {
	if l, ok := p.Users[user][meter]; ok {
		return l, true, true
	}
	l, ok := p.UserLimits[meter]
	return l, false, ok
}

// FeatureLimit returns the limit on meter of one feature; ok is false when none is set.
func (p Plan) FeatureLimit(meter, feature string) (int64, bool) {
	l, ok := p.FeatureLimits[feature][meter]
	return l, ok
}

// Tenant maps a tenant to a plan, with overrides.
type Tenant struct {
	ID           string           `yaml:"id"`
	Name         string           `yaml:"name,omitempty"`
	Plan         string           `yaml:"plan"`
	Limits       map[string]int64 `yaml:"limits,omitempty"`
	WarningRatio *float64         `yaml:"warning_ratio,omitempty"`
	// UserLimits replaces the plan's limit of every user, meter by meter; Users sets the limits
	// of named users; FeatureLimits replaces the plan's feature limits, feature and meter by
	// feature and meter (docs/quotas.md).
	UserLimits    map[string]int64            `yaml:"user_limits,omitempty"`
	Users         map[string]map[string]int64 `yaml:"users,omitempty"`
	FeatureLimits map[string]map[string]int64 `yaml:"feature_limits,omitempty"`
	// Start is when the tenant began (a date or RFC 3339 time): it is billed from that month
	// on. Zero: from its first usage or subscription.
	Start time.Time `yaml:"start,omitempty"`
}

// Config is the whole file.
type Config struct {
	File        string      `yaml:"-"`
	Ingest      Ingest      `yaml:"ingest"`
	Metrics     Metrics     `yaml:"metrics"`
	HTTP        HTTP        `yaml:"http"`
	Meters      []meter.Def `yaml:"meters"`
	DefaultPlan string      `yaml:"default_plan"`
	Plans       []Plan      `yaml:"plans"`
	Tenants     []Tenant    `yaml:"tenants"`
	Auth        yaml.Node   `yaml:"auth"`
	Billing     yaml.Node   `yaml:"billing"`
	Retention   yaml.Node   `yaml:"retention"`
	// Notifications is parsed by notify.ParseConfig.
	Notifications yaml.Node `yaml:"notifications"`

	tenants map[string]int
}

// FieldError locates a bad value in the file.
type FieldError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Defaults returns the configuration used when no file is given: the built-in meters and a
// catalogue with one unlimited plan.
func Defaults() *Config {
	c := &Config{
		Ingest:      Ingest{MaxBodyBytes: 16 << 20, MaxBatchEvents: 10000},
		Metrics:     Metrics{SeriesLimit: 10000},
		HTTP:        DefaultHTTP(),
		Meters:      meter.Defaults(),
		DefaultPlan: "unlimited",
		Plans:       []Plan{{Name: "unlimited", Enforcement: Soft, WarningRatio: 0.8}},
	}
	c.index()
	return c
}

// Load reads and validates a configuration file; "" gives the defaults.
func Load(path string) (*Config, error) {
	if path == "" {
		return Defaults(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.File = path
			return nil, fe
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.File = path
	return c, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)`)

// Parse decodes and validates a configuration document.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) { // an empty file: all defaults
			return Defaults(), nil
		}
		return nil, yamlError(err)
	}
	c := Defaults()
	c.Meters = nil
	c.Plans = nil
	c.DefaultPlan = ""
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return nil, decodeError(&root, err)
	}
	if err := c.validate(&root); err != nil {
		return nil, err
	}
	c.index()
	return c, nil
}

func yamlError(err error) error {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = "yaml: " + te.Errors[0]
	}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscan(m[1], &line)
		return &FieldError{Line: line, Msg: m[2]}
	}
	return &FieldError{Msg: msg}
}

// lineOf finds the line of a field path like "plans", 2, "limits", "documents".
func lineOf(root *yaml.Node, path ...any) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					line = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return line
			}
			n = n.Content[k]
			line = n.Line
		}
	}
	return line
}

func (c *Config) validate(root *yaml.Node) error {
	bad := func(msg string, path ...any) error {
		var f strings.Builder
		for _, p := range path {
			switch k := p.(type) {
			case string:
				if f.Len() > 0 {
					f.WriteString(".")
				}
				f.WriteString(k)
			case int:
				fmt.Fprintf(&f, "[%d]", k)
			}
		}
		return &FieldError{Line: lineOf(root, path...), Field: f.String(), Msg: msg}
	}
	if c.Ingest.MaxBodyBytes <= 0 {
		return bad("must be positive", "ingest", "max_body_bytes")
	}
	if c.Ingest.MaxBatchEvents <= 0 {
		return bad("must be positive", "ingest", "max_batch_events")
	}
	if c.Metrics.SeriesLimit <= 0 {
		return bad("must be positive", "metrics", "series_limit")
	}
	if err := c.HTTP.validate(bad); err != nil {
		return err
	}
	if c.Metrics.PerUserLabels && c.Metrics.UserLabelKeyFile == "" {
		return bad("per-user labels need a key file for the keyed hash that pseudonymises user ids", "metrics", "user_label_key_file")
	}
	if len(c.Meters) == 0 {
		c.Meters = meter.Defaults()
	} else {
		seen := map[string]bool{}
		metrics := map[string]bool{}
		for i := range c.Meters {
			d := &c.Meters[i]
			if err := d.Validate(); err != nil {
				var fe *meter.FieldError
				if errors.As(err, &fe) {
					path := []any{"meters", i}
					for _, part := range strings.FieldsFunc(fe.Field, func(r rune) bool { return r == '.' || r == '[' || r == ']' }) {
						var n int
						if _, err := fmt.Sscan(part, &n); err == nil {
							path = append(path, n)
						} else {
							path = append(path, part)
						}
					}
					return bad(fe.Msg, path...)
				}
				return bad(err.Error(), "meters", i)
			}
			if seen[d.Name] {
				return bad(fmt.Sprintf("meter %q is declared twice", d.Name), "meters", i, "name")
			}
			seen[d.Name] = true
			if d.Metric != nil {
				if metrics[d.Metric.Name] {
					return bad(fmt.Sprintf("metric %q is produced by two meters", d.Metric.Name), "meters", i, "metric", "name")
				}
				metrics[d.Metric.Name] = true
			}
			for j, b := range d.Events {
				if _, ok := event.Schemas[b.Type]; !ok && !strings.Contains(b.Type, ".") {
					return bad(fmt.Sprintf("event type %q is neither a contract type nor namespaced (like com.example.thing)", b.Type), "meters", i, "events", j, "type")
				}
			}
		}
	}
	if len(c.Plans) == 0 {
		c.Plans = Defaults().Plans
	}
	meterNames := map[string]bool{}
	for _, d := range c.Meters {
		meterNames[d.Name] = true
	}
	checkLimits := func(limits map[string]int64, path ...any) error {
		for m, v := range limits {
			if !meterNames[m] {
				return bad(fmt.Sprintf("%q is not a meter", m), append(path, m)...)
			}
			if v < 0 {
				return bad("a limit cannot be negative", append(path, m)...)
			}
		}
		return nil
	}
	// A user or feature limit needs the meter to keep that dimension: the ledger reads the
	// usage of one user or feature from its rollups by dimension.
	checkDim := func(dim string, limits map[string]int64, path ...any) error {
		if err := checkLimits(limits, path...); err != nil {
			return err
		}
		for m := range limits {
			if d, _ := c.Meter(m); !slices.Contains(d.Dimensions, dim) {
				return bad(fmt.Sprintf("meter %q does not keep the %s dimension, so it cannot be limited per %s", m, dim, dim), append(path, m)...)
			}
		}
		return nil
	}
	checkScoped := func(user map[string]int64, users, features map[string]map[string]int64, path ...any) error {
		if err := checkDim("user", user, append(path, "user_limits")...); err != nil {
			return err
		}
		for u, limits := range users {
			if !event.ValidID(u) {
				return bad(fmt.Sprintf("%q is not a valid user id", u), append(path, "users", u)...)
			}
			if err := checkDim("user", limits, append(path, "users", u)...); err != nil {
				return err
			}
		}
		for f, limits := range features {
			if f == "" {
				return bad("a feature name cannot be empty", append(path, "feature_limits")...)
			}
			if err := checkDim("feature", limits, append(path, "feature_limits", f)...); err != nil {
				return err
			}
		}
		return nil
	}
	plans := map[string]bool{}
	for i := range c.Plans {
		p := &c.Plans[i]
		if !meter.ValidName(p.Name) {
			return bad(fmt.Sprintf("%q must be lower case letters, digits and _", p.Name), "plans", i, "name")
		}
		if plans[p.Name] {
			return bad(fmt.Sprintf("plan %q is declared twice", p.Name), "plans", i, "name")
		}
		plans[p.Name] = true
		if p.Enforcement == "" {
			p.Enforcement = Hard
		}
		if p.Enforcement != Hard && p.Enforcement != Soft {
			return bad(fmt.Sprintf("%q must be hard or soft", p.Enforcement), "plans", i, "enforcement")
		}
		if p.WarningRatio == 0 {
			p.WarningRatio = 0.8
		}
		if !(p.WarningRatio > 0 && p.WarningRatio <= 1) || math.IsNaN(p.WarningRatio) {
			return bad("must be in (0, 1]", "plans", i, "warning_ratio")
		}
		if err := checkLimits(p.Limits, "plans", i, "limits"); err != nil {
			return err
		}
		if err := checkScoped(p.UserLimits, nil, p.FeatureLimits, "plans", i); err != nil {
			return err
		}
	}
	if c.DefaultPlan == "" {
		c.DefaultPlan = c.Plans[0].Name
	}
	if !plans[c.DefaultPlan] {
		return bad(fmt.Sprintf("plan %q is not in the catalogue", c.DefaultPlan), "default_plan")
	}
	ids := map[string]bool{}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		if !event.ValidID(t.ID) {
			return bad(fmt.Sprintf("%q is not a valid tenant id", t.ID), "tenants", i, "id")
		}
		if ids[t.ID] {
			return bad(fmt.Sprintf("tenant %q is listed twice", t.ID), "tenants", i, "id")
		}
		ids[t.ID] = true
		if t.Plan == "" {
			t.Plan = c.DefaultPlan
		}
		if !plans[t.Plan] {
			return bad(fmt.Sprintf("plan %q is not in the catalogue", t.Plan), "tenants", i, "plan")
		}
		if err := checkLimits(t.Limits, "tenants", i, "limits"); err != nil {
			return err
		}
		if err := checkScoped(t.UserLimits, t.Users, t.FeatureLimits, "tenants", i); err != nil {
			return err
		}
		if r := t.WarningRatio; r != nil && !(*r > 0 && *r <= 1) {
			return bad("must be in (0, 1]", "tenants", i, "warning_ratio")
		}
	}
	return nil
}

func (c *Config) index() {
	c.tenants = make(map[string]int, len(c.Tenants))
	for i, t := range c.Tenants {
		c.tenants[t.ID] = i
	}
}

// Plan returns the catalogue entry of a plan.
func (c *Config) Plan(name string) (Plan, bool) {
	i := slices.IndexFunc(c.Plans, func(p Plan) bool { return p.Name == name })
	if i < 0 {
		return Plan{}, false
	}
	return c.Plans[i], true
}

// Tenant returns the tenant entry of id, if listed.
func (c *Config) Tenant(id string) (Tenant, bool) {
	i, ok := c.tenants[id]
	if !ok {
		return Tenant{}, false
	}
	return c.Tenants[i], true
}

// PlanOf returns the plan of a tenant with the tenant's overrides applied. Tenants that are not
// listed are on the default plan.
func (c *Config) PlanOf(tenant string) Plan {
	name := c.DefaultPlan
	t, listed := c.Tenant(tenant)
	if listed {
		name = t.Plan
	}
	return c.WithOverrides(name, t)
}

// WithOverrides returns plan name with t's overrides applied (t may be the zero Tenant).
func (c *Config) WithOverrides(name string, t Tenant) Plan {
	p, _ := c.Plan(name)
	if len(t.Limits) > 0 {
		limits := make(map[string]int64, len(p.Limits)+len(t.Limits))
		for k, v := range p.Limits {
			limits[k] = v
		}
		for k, v := range t.Limits {
			limits[k] = v
		}
		p.Limits = limits
	}
	if t.WarningRatio != nil {
		p.WarningRatio = *t.WarningRatio
	}
	if len(t.UserLimits) > 0 {
		p.UserLimits = mergeLimits(p.UserLimits, t.UserLimits)
	}
	if len(t.FeatureLimits) > 0 {
		features := make(map[string]map[string]int64, len(p.FeatureLimits)+len(t.FeatureLimits))
		for f, l := range p.FeatureLimits {
			features[f] = l
		}
		for f, l := range t.FeatureLimits {
			features[f] = mergeLimits(features[f], l)
		}
		p.FeatureLimits = features
	}
	p.Users = t.Users
	return p
}

// mergeLimits returns base with over's limits replacing its own, without changing either.
func mergeLimits(base, over map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// Meter returns the definition of a meter.
func (c *Config) Meter(name string) (*meter.Def, bool) {
	for i := range c.Meters {
		if c.Meters[i].Name == name {
			return &c.Meters[i], true
		}
	}
	return nil, false
}

// CustomEventTypes returns the event types that meters consume beyond the contract's.
func (c *Config) CustomEventTypes() map[string]bool { return meter.CustomEventTypes(c.Meters) }
