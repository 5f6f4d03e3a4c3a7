import { CoreApp, DataSourceInstanceSettings, ScopedVars } from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

import { DEFAULT_QUERY, FORMATS, REPORTS, UsageOptions, UsageQuery, exportPath } from './types';

export class DataSource extends DataSourceWithBackend<UsageQuery, UsageOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<UsageOptions>) {
    super(instanceSettings);
  }

  getDefaultQuery(_: CoreApp): Partial<UsageQuery> {
    return DEFAULT_QUERY;
  }

  /** Template variables are resolved here, in the browser; "All" tenants become ".*". */
  applyTemplateVariables(query: UsageQuery, scopedVars: ScopedVars): UsageQuery {
    const t = getTemplateSrv();
    return {
      ...query,
      tenant: query.tenant ? t.replace(query.tenant, scopedVars, allAsRegex) : query.tenant,
      meter: query.meter ? t.replace(query.meter, scopedVars) : query.meter,
      groupBy: query.groupBy ? t.replace(query.groupBy, scopedVars) : query.groupBy,
      period: query.period ? t.replace(query.period, scopedVars) : query.period,
    };
  }

  filterQuery(query: UsageQuery): boolean {
    return !!query.queryType && !query.hide;
  }

  /** Downloads a report through the backend (CallResource /export): the policies decide. */
  exportUrl(report: (typeof REPORTS)[number], format: (typeof FORMATS)[number], tenant: string | undefined, fromMs: number, toMs: number): string {
    return `/api/datasources/uid/${this.uid}/resources/${exportPath(report, format, tenant, fromMs, toMs)}`;
  }
}

/** A multi-value or All selection of tenants is sent as "all tenants" (the backend checks the role). */
function allAsRegex(value: string | string[]): string {
  if (Array.isArray(value)) {
    return value.length === 1 ? value[0] : '.*';
  }
  return value;
}
