package config

import (
	"strings"
	"testing"
)

// TestWrongTypeNamesTheField: a wrongly typed value is reported with its file line, its field
// path and what was expected, not only yaml's "cannot unmarshal !!str into int64".
func TestWrongTypeNamesTheField(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"plans:\n  - name: free\n    limits:\n      ai_tokens: lots\ndefault_plan: free\n",
			`4: plans[0].limits.ai_tokens: "lots" is a string, want an integer`},
		{"ingest:\n  max_batch_events: [1]\n", `2: ingest.max_batch_events: `},
		{"metrics:\n  per_user_labels: maybe\n", `2: metrics.per_user_labels: "maybe" is a string, want true or false`},
		{"plans:\n  - {name: free}\ndefault_plan: free\ntenants:\n  - {id: acme, plan: free, start: 2026-13-01}\n",
			`5: tenants[0].start: "2026-13-01" is not an RFC 3339 time`},
	} {
		_, err := Parse([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "2006-01-02") {
			t.Errorf("%q: got %v, want %q", c.doc, err, c.want)
		}
	}
}
