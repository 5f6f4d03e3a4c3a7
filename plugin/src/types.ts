import { DataQuery, DataSourceJsonData } from '@grafana/data';

/** The query types the backend answers (plugin/pkg/usagemeter/query.go); dashboards use these names. */
export const QUERY_TYPES = [
  { value: 'usage_summary', label: 'Usage summary', description: 'Usage per tenant and meter with quota state' },
  { value: 'usage_timeseries', label: 'Usage time series', description: 'A meter over time from VictoriaMetrics' },
  { value: 'top_users', label: 'Top users', description: "A tenant's heaviest users of a meter" },
  { value: 'feature_adoption', label: 'Feature adoption', description: 'Users and tenants per feature, adoption over time' },
  { value: 'user_activity', label: 'User activity', description: 'DAU/WAU/MAU, logins, sessions, inactive users' },
  { value: 'storage_documents', label: 'Storage and documents', description: 'Documents and bytes by type, storage by class' },
  { value: 'ingestion', label: 'Ingestion', description: 'Ingestion volumes and frequency per source' },
  { value: 'invoices', label: 'Invoices', description: 'Invoices of the period, and lines for one invoice' },
  { value: 'billing_kpis', label: 'Billing KPIs', description: 'Revenue, ARPU, overage revenue, outstanding balance' },
  { value: 'forecast', label: 'Forecast', description: 'A meter to the end of the period with a confidence band' },
  { value: 'anomalies', label: 'Anomalies', description: 'Hourly rate z-scores against the 7-day baseline' },
  { value: 'insights', label: 'Optimization insights', description: 'Savings opportunities' },
  { value: 'audit', label: 'Audit trail', description: 'Who read, exported or changed what' },
] as const;

export type QueryType = (typeof QUERY_TYPES)[number]['value'];

export const PERIODS = ['hour', 'day', 'month'] as const;
export type Period = (typeof PERIODS)[number];

export interface UsageQuery extends DataQuery {
  queryType: QueryType;
  tenant?: string;
  meter?: string;
  groupBy?: string;
  period?: Period | string;
}

export const DEFAULT_QUERY: Partial<UsageQuery> = {
  queryType: 'usage_summary',
  period: 'day',
};

/** Query types that need one tenant (the exporter's per-tenant endpoints). */
export const NEEDS_TENANT: ReadonlySet<string> = new Set(['top_users', 'forecast']);
/** Query types that read a meter. */
export const USES_METER: ReadonlySet<string> = new Set(['usage_timeseries', 'top_users', 'forecast', 'anomalies']);

/** usagemeter roles a Grafana user can be mapped to (docs/security.md). */
export const ROLES = ['platform_admin', 'billing_admin', 'saas_admin', 'sre', 'tenant_user'] as const;
export const ORG_ROLES = ['Admin', 'Editor', 'Viewer'] as const;

export interface RoleMapping {
  login?: string;
  email?: string;
  orgRole?: string;
  roles: string[];
  tenants?: string[];
}

export interface UsageOptions extends DataSourceJsonData {
  exporterUrl?: string;
  victoriaMetricsUrl?: string;
  roleMappings?: RoleMapping[];
  backgroundRoles?: string[];
  backgroundTenants?: string[];
  topUsers?: number;
}

export interface UsageSecureOptions {
  apiToken?: string;
}

/** Splits a comma list, trimming blanks. */
export function splitList(s: string): string[] {
  return s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

/** Problems with a role mapping, as the backend would report them (settings.go). */
export function mappingErrors(m: RoleMapping): string[] {
  const errs: string[] = [];
  if (!m.roles || m.roles.length === 0) {
    errs.push('pick at least one role');
  }
  for (const r of m.roles ?? []) {
    if (!(ROLES as readonly string[]).includes(r)) {
      errs.push(`unknown role ${r}`);
    }
  }
  if (m.orgRole && !(ORG_ROLES as readonly string[]).includes(m.orgRole)) {
    errs.push(`unknown org role ${m.orgRole}`);
  }
  const tenantScoped = (m.roles ?? []).some((r) => r === 'saas_admin' || r === 'tenant_user');
  if (tenantScoped && (!m.tenants || m.tenants.length === 0)) {
    errs.push('saas_admin and tenant_user act on named tenants: list them');
  }
  return errs;
}

export const REPORTS = ['usage', 'invoices', 'executive', 'compliance'] as const;
export const FORMATS = ['csv', 'json', 'pdf'] as const;

/** The resource path of an export (CallResource /export), relative to the datasource's resources. */
export function exportPath(
  report: (typeof REPORTS)[number],
  format: (typeof FORMATS)[number],
  tenant: string | undefined,
  fromMs: number,
  toMs: number
): string {
  const p = new URLSearchParams({ report, format, from: String(fromMs), to: String(toMs) });
  if (tenant && tenant !== '.*' && tenant !== '$__all') {
    p.set('tenant', tenant);
  }
  return `export?${p.toString()}`;
}
