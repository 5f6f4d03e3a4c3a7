package notify

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/config"
)

// Config is the notifications section of the exporter's config file.
type Config struct {
	// EvaluateInterval: rules are evaluated after every group commit of the ledger, and at
	// least this often (plan changes and reloads are not commits). Default 30s.
	EvaluateInterval time.Duration `yaml:"evaluate_interval"`
	// Workers send deliveries in parallel. Default 4.
	Workers int `yaml:"workers"`
	// WebhookTimeout bounds one webhook attempt. Default 10s.
	WebhookTimeout time.Duration `yaml:"webhook_timeout"`
	// Retry: the first delay after a failure (doubling), its cap, and how long a delivery is
	// tried before it is dead-lettered. Defaults 30s, 4h, 26h.
	RetryFirst  time.Duration `yaml:"retry_first"`
	RetryMax    time.Duration `yaml:"retry_max"`
	RetryGiveUp time.Duration `yaml:"retry_give_up"`
	SMTP        SMTP          `yaml:"smtp"`
}

// ParseConfig reads the notifications section (absent: the defaults; e-mail channels then fail
// until an SMTP server is configured).
func ParseConfig(n *yaml.Node) (Config, error) {
	c := Config{EvaluateInterval: 30 * time.Second, Workers: 4, WebhookTimeout: 10 * time.Second,
		RetryFirst: DefaultBackoff.First, RetryMax: DefaultBackoff.Max, RetryGiveUp: DefaultBackoff.GiveUp}
	if n == nil || n.Kind == 0 {
		return c, nil
	}
	// Strict: a misspelt key is an error, as in the rest of the file.
	raw, err := yaml.Marshal(n)
	if err != nil {
		return c, &config.FieldError{Line: n.Line, Field: "notifications", Msg: err.Error()}
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, &config.FieldError{Line: n.Line, Field: "notifications", Msg: err.Error()}
	}
	switch {
	case c.EvaluateInterval < 100*time.Millisecond:
		err = errors.New("evaluate_interval: at least 100ms")
	case c.Workers < 1 || c.Workers > 64:
		err = errors.New("workers: 1..64")
	case c.WebhookTimeout <= 0:
		err = errors.New("webhook_timeout: > 0")
	case c.RetryFirst <= 0 || c.RetryMax < c.RetryFirst:
		err = errors.New("retry_first: > 0 and retry_max >= retry_first")
	case c.RetryGiveUp < 24*time.Hour:
		err = errors.New("retry_give_up: at least 24h (a receiver down for a night still gets its events)")
	default:
		err = c.SMTP.load()
	}
	if err != nil {
		return c, &config.FieldError{Line: n.Line, Field: "notifications", Msg: err.Error()}
	}
	return c, nil
}

// Backoff is the retry schedule configured.
func (c Config) Backoff() Backoff {
	return Backoff{First: c.RetryFirst, Max: c.RetryMax, GiveUp: c.RetryGiveUp}
}

// String summarises the config for the start-up log.
func (c Config) String() string {
	return fmt.Sprintf("evaluate_interval=%s workers=%d smtp=%q", c.EvaluateInterval, c.Workers, c.SMTP.Addr)
}
