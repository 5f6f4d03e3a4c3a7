import React, { ChangeEvent } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, Select } from '@grafana/ui';

import { DataSource } from '../datasource';
import { DEFAULT_QUERY, NEEDS_TENANT, PERIODS, QUERY_TYPES, USES_METER, UsageOptions, UsageQuery } from '../types';

type Props = QueryEditorProps<DataSource, UsageQuery, UsageOptions>;

const typeOptions: Array<SelectableValue<string>> = QUERY_TYPES.map((q) => ({ ...q }));
const periodOptions: Array<SelectableValue<string>> = PERIODS.map((p) => ({ value: p, label: p }));

/** Query type, tenant, meter, grouping and period: the query model the dashboards use. */
export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  const q = { ...DEFAULT_QUERY, ...query } as UsageQuery;
  const set = (patch: Partial<UsageQuery>, run = false) => {
    onChange({ ...q, ...patch });
    if (run) {
      onRunQuery();
    }
  };
  const text = (key: 'tenant' | 'meter' | 'groupBy') => (e: ChangeEvent<HTMLInputElement>) => set({ [key]: e.target.value });
  const needsTenant = NEEDS_TENANT.has(q.queryType);
  return (
    <>
      <InlineFieldRow>
        <InlineField label="Query type" labelWidth={14} tooltip="What the panel shows">
          <Select
            inputId="usagemeter-query-type"
            width={28}
            options={typeOptions}
            value={q.queryType}
            onChange={(v) => set({ queryType: v.value as UsageQuery['queryType'] }, true)}
          />
        </InlineField>
        <InlineField label="Period" labelWidth={10} tooltip="Aggregation window: hour, day or month">
          <Select
            inputId="usagemeter-period"
            width={12}
            options={periodOptions}
            value={q.period}
            allowCustomValue
            onChange={(v) => set({ period: v.value }, true)}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        <InlineField
          label="Tenant"
          labelWidth={14}
          tooltip={needsTenant ? 'This query type needs one tenant' : 'A tenant id, a variable such as $tenant, or empty for all tenants'}
          invalid={needsTenant && !q.tenant}
          error={needsTenant && !q.tenant ? 'required' : undefined}
        >
          <Input id="usagemeter-tenant" width={28} value={q.tenant ?? ''} placeholder="all tenants" onChange={text('tenant')} onBlur={onRunQuery} />
        </InlineField>
        {USES_METER.has(q.queryType) && (
          <InlineField label="Meter" labelWidth={10}>
            <Input id="usagemeter-meter" width={20} value={q.meter ?? ''} placeholder="ai_tokens" onChange={text('meter')} onBlur={onRunQuery} />
          </InlineField>
        )}
        <InlineField label="Group by" labelWidth={10} tooltip="A dimension (feature, model, source, doc_type) or plan for billing KPIs">
          <Input id="usagemeter-group-by" width={16} value={q.groupBy ?? ''} onChange={text('groupBy')} onBlur={onRunQuery} />
        </InlineField>
      </InlineFieldRow>
    </>
  );
}
