package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/backup"
)

// TestBackupIsAnAuditedAdminAction: POST /v1/admin/backup is decided by the policies as the admin
// action (a tenant's admin is refused), streams a whole backup to a platform admin, and both
// the refusal and the backup are in the audit trail.
func TestBackupIsAnAuditedAdminAction(t *testing.T) {
	_, ts, c := secured(t)
	if code, body := do(t, ts, "POST", "/v1/events", c.ingestAcme, "application/x-ndjson", event("b1", "acme", "u1", 42)); code != 202 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	for name, tok := range map[string]string{"saas_admin": c.acmeAdmin, "tenant_user": c.alice, "ingest key": c.ingestAcme} {
		if code, _ := do(t, ts, "POST", "/v1/admin/backup", tok, "", ""); code != 403 {
			t.Errorf("%s took a backup: %d", name, code)
		}
	}
	code, body := do(t, ts, "POST", "/v1/admin/backup", c.admin, "", "")
	if code != 200 {
		t.Fatalf("backup: %d %.300s", code, body)
	}
	m, err := backup.Extract(t.Context(), strings.NewReader(body), nil, "", nil)
	if err != nil {
		t.Fatalf("the streamed backup does not check out: %v", err)
	}
	if m.Events != 1 {
		t.Fatalf("the backup holds %d events, want 1", m.Events)
	}
	code, body = do(t, ts, "GET", "/v1/audit?limit=1000", c.admin, "", "")
	if code != 200 {
		t.Fatalf("audit: %d %s", code, body)
	}
	var trail struct {
		Entries []struct {
			Subject, Action, Path string
			Allow                 bool
			Status                int
		}
	}
	json.Unmarshal([]byte(body), &trail)
	var allowed, denied bool
	for _, e := range trail.Entries {
		if e.Path != "/v1/admin/backup" || e.Action != route.ActionAdmin {
			continue
		}
		allowed = allowed || e.Allow && e.Subject == "root" && e.Status == 200
		denied = denied || !e.Allow && e.Subject == "acme-admin" && e.Status == 403
	}
	if !allowed || !denied {
		t.Fatalf("the audit trail lacks the backup (%v) or its refusal (%v): %s", allowed, denied, body)
	}
}
