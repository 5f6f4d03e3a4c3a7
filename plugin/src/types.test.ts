import { describe, expect, it } from 'vitest';

import { QUERY_TYPES, exportPath, mappingErrors, splitList } from './types';

describe('query types', () => {
  it('are exactly the names the backend and the dashboards use', () => {
    expect(QUERY_TYPES.map((q) => q.value).sort()).toEqual(
      [
        'anomalies',
        'audit',
        'billing_kpis',
        'feature_adoption',
        'forecast',
        'ingestion',
        'insights',
        'invoices',
        'storage_documents',
        'top_users',
        'usage_summary',
        'usage_timeseries',
        'user_activity',
      ].sort()
    );
  });
});

describe('role mappings', () => {
  it('accepts a global role without tenants', () => {
    expect(mappingErrors({ orgRole: 'Admin', roles: ['platform_admin'] })).toEqual([]);
  });
  it('wants at least one role', () => {
    expect(mappingErrors({ login: 'bob', roles: [] })).toContain('pick at least one role');
  });
  it('refuses unknown roles and org roles', () => {
    const errs = mappingErrors({ orgRole: 'Owner', roles: ['root'] });
    expect(errs).toContain('unknown role root');
    expect(errs).toContain('unknown org role Owner');
  });
  it('wants tenants for tenant-scoped roles', () => {
    expect(mappingErrors({ email: '*@acme.example', roles: ['saas_admin'] })).toHaveLength(1);
    expect(mappingErrors({ email: '*@acme.example', roles: ['saas_admin'], tenants: ['acme'] })).toEqual([]);
  });
  it('splits comma lists', () => {
    expect(splitList(' acme, globex ,,')).toEqual(['acme', 'globex']);
  });
});

describe('export paths', () => {
  it('names one tenant', () => {
    expect(exportPath('usage', 'csv', 'acme', 1000, 2000)).toBe('export?report=usage&format=csv&from=1000&to=2000&tenant=acme');
  });
  it('leaves all tenants unnamed', () => {
    expect(exportPath('invoices', 'pdf', '.*', 1, 2)).toBe('export?report=invoices&format=pdf&from=1&to=2');
    expect(exportPath('executive', 'json', undefined, 1, 2)).not.toContain('tenant');
  });
});
