package ledger

// Seen reports whether any stored event named the tenant: a total of any of its metric series or
// any activity, the same knowledge as KnownTenants, from memory. Reads naming a tenant use it to
// tell "no usage in this range" from "no such tenant" (a typo).
func (s *Store) Seen(tenant string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.meters {
		mt := m.Name + sep + tenant
		if len(s.mirror.byTenant[mt]) > 0 || len(s.mirror.active[mt]) > 0 {
			return true
		}
	}
	return false
}
