package authz

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Principal is who is asking, as the policies see it (exporter/auth builds it).
type Principal struct {
	Subject string   `json:"subject"`
	Kind    string   `json:"kind"`
	Roles   []string `json:"roles"`
	Tenants []string `json:"tenants"`
}

// Input is one request to decide.
type Input struct {
	Principal Principal `json:"principal"`
	Action    string    `json:"action"` // a route action (exporter/api/route)
	Tenant    string    `json:"tenant"` // "" = all tenants, or none
	User      string    `json:"user"`   // the user the request is about; "" = none
	Method    string    `json:"method"`
	Path      string    `json:"path"`
}

// Decision is the policy's answer to an Input.
type Decision struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason"`
}

// Decide evaluates the authorization policy. An error means no decision could be made; callers
// must then deny.
func (e *Engine) Decide(ctx context.Context, in Input) (Decision, error) {
	set := e.current.Load()
	key := in.memoKey()
	if d, ok := set.decisions.get(key); ok {
		return d, nil
	}
	v, err := eval(ctx, set.authz, in.value())
	if err != nil {
		return Decision{}, fmt.Errorf("authorize %s: %w", in.Action, err)
	}
	var d Decision
	var ok bool
	if d.Allow, ok = v["allow"].(bool); !ok {
		return Decision{}, fmt.Errorf("authorize %s: allow is %T, want bool", in.Action, v["allow"])
	}
	d.Reason, _ = v["reason"].(string)
	set.decisions.put(key, d)
	return d, nil
}

// memoKey identifies an input exactly. Every field is written with its length in front (and
// each list with its count), so no value can move a field boundary: subjects, user ids and
// methods come from callers and may hold any byte, separators included.
func (in Input) memoKey() string {
	n := 16 + len(in.Principal.Subject) + len(in.Principal.Kind) + len(in.Action) + len(in.Tenant) +
		len(in.User) + len(in.Method) + len(in.Path)
	for _, l := range [][]string{in.Principal.Roles, in.Principal.Tenants} {
		for _, s := range l {
			n += 2 + len(s)
		}
	}
	b := make([]byte, 0, n)
	field := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	list := func(l []string) {
		// nil and empty are one value to the policies (stringArray renders both as []).
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, s := range l {
			field(s)
		}
	}
	field(in.Principal.Subject)
	field(in.Principal.Kind)
	list(in.Principal.Roles)
	list(in.Principal.Tenants)
	for _, s := range []string{in.Action, in.Tenant, in.User, in.Method, in.Path} {
		field(s)
	}
	return string(b)
}

// decisionMemo is a bounded memo: past maxMemo entries it starts afresh rather than grow.
type decisionMemo struct {
	mu sync.RWMutex
	m  map[string]Decision
}

const maxMemo = 100000

func (c *decisionMemo) get(k string) (Decision, bool) {
	c.mu.RLock()
	d, ok := c.m[k]
	c.mu.RUnlock()
	return d, ok
}

func (c *decisionMemo) put(k string, d Decision) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxMemo {
		c.m = make(map[string]Decision, 1024)
	}
	c.m[k] = d
	c.mu.Unlock()
}

// Quota admission results.
const (
	ResultAllow = "allow"
	ResultWarn  = "warn"
	ResultDeny  = "deny"
)

// QuotaInput is one admission question: may Tenant use Amount more of Meter?
type QuotaInput struct {
	Tenant string `json:"tenant"`
	Meter  string `json:"meter"`
	Plan   string `json:"plan"`
	Amount int64  `json:"amount"`
	Used   int64  `json:"used"` // exact usage in the current period (the ledger's figure)
	// Limit is the limit in force; nil means the meter is unlimited on this plan.
	Limit        *int64  `json:"limit"`
	WarningRatio float64 `json:"warning_ratio"`
	Enforcement  string  `json:"enforcement"` // "hard" (default) or "soft"
	Feature      string  `json:"feature,omitempty"`
	// PlanFeatures lists the features the plan allows; nil means every feature.
	PlanFeatures []string `json:"plan_features"`
	User         string   `json:"user,omitempty"`
	// Scopes are the further limits that apply: the user's and the feature's, each with its
	// own exact usage. The decision is the tightest of these and the tenant's.
	Scopes []QuotaScope `json:"scopes,omitempty"`
	// BillingHold, when set, puts the tenant on a dunning hold: the policy denies every
	// request (see billing: dunning).
	BillingHold *BillingHold `json:"billing_hold,omitempty"`
}

// BillingHold says why a tenant's quota admission is denied by dunning.
type BillingHold struct {
	Reason string `json:"reason"`
}

// Limit scopes: which limit a quota decision came from.
const (
	ScopeTenant  = "tenant"
	ScopeUser    = "user"
	ScopeFeature = "feature"
)

// QuotaScope is a user's or a feature's limit and exact usage in the current period.
type QuotaScope struct {
	Scope string `json:"scope"` // ScopeUser or ScopeFeature
	Name  string `json:"name"`  // the user or the feature
	Used  int64  `json:"used"`
	Limit int64  `json:"limit"`
}

// QuotaDecision is the admission answer.
type QuotaDecision struct {
	Result string `json:"result"` // allow, warn or deny
	// Remaining is what is left of the limit: after Amount when admitted, as it stands when
	// denied. Meaningless when Unlimited.
	Remaining int64 `json:"remaining"`
	Unlimited bool  `json:"unlimited,omitempty"`
	// LimitScope is the scope of the tightest limit, the one the decision came from ("" when
	// Unlimited).
	LimitScope string `json:"limit_scope,omitempty"`
	Reason     string `json:"reason"`
}

// Admit evaluates the quota admission policy.
func (e *Engine) Admit(ctx context.Context, in QuotaInput) (QuotaDecision, error) {
	v, err := eval(ctx, e.current.Load().quota, in.value())
	if err != nil {
		return QuotaDecision{}, fmt.Errorf("admit %s/%s: %w", in.Tenant, in.Meter, err)
	}
	var d QuotaDecision
	d.Result, _ = v["result"].(string)
	d.Reason, _ = v["reason"].(string)
	d.Unlimited, _ = v["unlimited"].(bool)
	switch d.Result {
	case ResultAllow, ResultWarn, ResultDeny:
	default:
		return QuotaDecision{}, fmt.Errorf("admit %s/%s: result %q is not allow, warn or deny", in.Tenant, in.Meter, v["result"])
	}
	if !d.Unlimited {
		d.LimitScope, _ = v["limit_scope"].(string)
		switch d.LimitScope {
		case ScopeTenant, ScopeUser, ScopeFeature:
		default:
			return QuotaDecision{}, fmt.Errorf("admit %s/%s: limit_scope %q is not tenant, user or feature", in.Tenant, in.Meter, v["limit_scope"])
		}
		n, ok := v["remaining"].(json.Number)
		if !ok {
			return QuotaDecision{}, fmt.Errorf("admit %s/%s: remaining is %T, want a number", in.Tenant, in.Meter, v["remaining"])
		}
		if d.Remaining, err = n.Int64(); err != nil {
			return QuotaDecision{}, fmt.Errorf("admit %s/%s: remaining: %w", in.Tenant, in.Meter, err)
		}
	}
	return d, nil
}

// eval runs a prepared query whose value must be an object.
func eval(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value) (map[string]any, error) {
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, ErrNoDecision
	}
	v, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("decision is %T, want an object", rs[0].Expressions[0].Value)
	}
	return v, nil
}

// value builds the input as an OPA value directly: handing OPA a Go struct would make it
// round-trip through JSON on every request.
func (in Input) value() ast.Value {
	return ast.NewObject(
		ast.Item(ast.StringTerm("principal"), ast.NewTerm(ast.NewObject(
			ast.Item(ast.StringTerm("subject"), ast.StringTerm(in.Principal.Subject)),
			ast.Item(ast.StringTerm("kind"), ast.StringTerm(in.Principal.Kind)),
			ast.Item(ast.StringTerm("roles"), stringArray(in.Principal.Roles)),
			ast.Item(ast.StringTerm("tenants"), stringArray(in.Principal.Tenants)),
		))),
		ast.Item(ast.StringTerm("action"), ast.StringTerm(in.Action)),
		ast.Item(ast.StringTerm("tenant"), ast.StringTerm(in.Tenant)),
		ast.Item(ast.StringTerm("user"), ast.StringTerm(in.User)),
		ast.Item(ast.StringTerm("method"), ast.StringTerm(in.Method)),
		ast.Item(ast.StringTerm("path"), ast.StringTerm(in.Path)),
	)
}

func (in QuotaInput) value() ast.Value {
	limit := ast.NullTerm()
	if in.Limit != nil {
		limit = ast.IntNumberTerm(int(*in.Limit))
	}
	features := ast.NullTerm()
	if in.PlanFeatures != nil {
		features = stringArray(in.PlanFeatures)
	}
	terms := make([]*ast.Term, len(in.Scopes))
	for i, sc := range in.Scopes {
		terms[i] = ast.NewTerm(ast.NewObject(
			ast.Item(ast.StringTerm("scope"), ast.StringTerm(sc.Scope)),
			ast.Item(ast.StringTerm("name"), ast.StringTerm(sc.Name)),
			ast.Item(ast.StringTerm("used"), ast.IntNumberTerm(int(sc.Used))),
			ast.Item(ast.StringTerm("limit"), ast.IntNumberTerm(int(sc.Limit))),
		))
	}
	scopes := ast.ArrayTerm(terms...)
	hold := ast.NullTerm()
	if in.BillingHold != nil {
		hold = ast.ObjectTerm(ast.Item(ast.StringTerm("reason"), ast.StringTerm(in.BillingHold.Reason)))
	}
	return ast.NewObject(
		ast.Item(ast.StringTerm("tenant"), ast.StringTerm(in.Tenant)),
		ast.Item(ast.StringTerm("meter"), ast.StringTerm(in.Meter)),
		ast.Item(ast.StringTerm("plan"), ast.StringTerm(in.Plan)),
		ast.Item(ast.StringTerm("amount"), ast.IntNumberTerm(int(in.Amount))),
		ast.Item(ast.StringTerm("used"), ast.IntNumberTerm(int(in.Used))),
		ast.Item(ast.StringTerm("limit"), limit),
		ast.Item(ast.StringTerm("warning_ratio"), ast.FloatNumberTerm(in.WarningRatio)),
		ast.Item(ast.StringTerm("enforcement"), ast.StringTerm(in.Enforcement)),
		ast.Item(ast.StringTerm("feature"), ast.StringTerm(in.Feature)),
		ast.Item(ast.StringTerm("plan_features"), features),
		ast.Item(ast.StringTerm("user"), ast.StringTerm(in.User)),
		ast.Item(ast.StringTerm("scopes"), scopes),
		ast.Item(ast.StringTerm("billing_hold"), hold),
	)
}

func stringArray(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}
