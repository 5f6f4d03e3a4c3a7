import React, { ChangeEvent } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Button, InlineField, InlineFieldRow, Input, SecretInput, Select } from '@grafana/ui';

import { ORG_ROLES, ROLES, RoleMapping, UsageOptions, UsageSecureOptions, mappingErrors, splitList } from '../types';

type Props = DataSourcePluginOptionsEditorProps<UsageOptions, UsageSecureOptions>;

const roleOptions = ROLES.map((r) => ({ value: r, label: r }));
const orgRoleOptions = [{ value: '', label: 'any' }, ...ORG_ROLES.map((r) => ({ value: r, label: r }))];

/** Exporter URL, VictoriaMetrics URL, the secure API token, and who in Grafana is what in usagemeter. */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const json = options.jsonData;
  const secure = options.secureJsonFields ?? {};
  const setJSON = (patch: Partial<UsageOptions>) => onOptionsChange({ ...options, jsonData: { ...json, ...patch } });
  const mappings = json.roleMappings ?? [];
  const setMapping = (i: number, patch: Partial<RoleMapping>) =>
    setJSON({ roleMappings: mappings.map((m, j) => (i === j ? { ...m, ...patch } : m)) });

  return (
    <>
      <h3>Connection</h3>
      <InlineField label="Exporter URL" labelWidth={24} tooltip="usage-exporter's HTTP API, e.g. http://usagemeter:9477">
        <Input
          id="usagemeter-exporter-url"
          width={48}
          value={json.exporterUrl ?? ''}
          placeholder="http://127.0.0.1:9477"
          onChange={(e: ChangeEvent<HTMLInputElement>) => setJSON({ exporterUrl: e.target.value })}
        />
      </InlineField>
      <InlineField label="VictoriaMetrics URL" labelWidth={24} tooltip="Prometheus API of the VictoriaMetrics that scrapes the exporter">
        <Input
          id="usagemeter-vm-url"
          width={48}
          value={json.victoriaMetricsUrl ?? ''}
          placeholder="http://127.0.0.1:8428"
          onChange={(e: ChangeEvent<HTMLInputElement>) => setJSON({ victoriaMetricsUrl: e.target.value })}
        />
      </InlineField>
      <InlineField label="API token" labelWidth={24} tooltip="Bearer token of the plugin's service principal on the exporter (usagectl keys new)">
        <SecretInput
          id="usagemeter-api-token"
          width={48}
          isConfigured={!!secure.apiToken}
          value={options.secureJsonData?.apiToken ?? ''}
          onReset={() =>
            onOptionsChange({
              ...options,
              secureJsonFields: { ...secure, apiToken: false },
              secureJsonData: { ...options.secureJsonData, apiToken: '' },
            })
          }
          onChange={(e: ChangeEvent<HTMLInputElement>) =>
            onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, apiToken: e.target.value } })
          }
        />
      </InlineField>

      <h3>Access</h3>
      <p>
        Each Grafana user gets the usagemeter roles and tenants of every mapping that matches them (login and e-mail accept
        patterns such as <code>*@example.com</code>). A user no mapping matches is refused. Alerting and background requests
        use the background roles and only ever get tenant-level aggregates.
      </p>
      {mappings.map((m, i) => {
        const errs = mappingErrors(m);
        return (
          <InlineFieldRow key={i}>
            <InlineField label="Login" labelWidth={8}>
              <Input aria-label={`mapping ${i} login`} width={16} value={m.login ?? ''} onChange={(e: ChangeEvent<HTMLInputElement>) => setMapping(i, { login: e.target.value })} />
            </InlineField>
            <InlineField label="E-mail" labelWidth={8}>
              <Input aria-label={`mapping ${i} email`} width={20} value={m.email ?? ''} onChange={(e: ChangeEvent<HTMLInputElement>) => setMapping(i, { email: e.target.value })} />
            </InlineField>
            <InlineField label="Org role" labelWidth={10}>
              <Select width={12} options={orgRoleOptions} value={m.orgRole ?? ''} onChange={(v) => setMapping(i, { orgRole: v.value || undefined })} />
            </InlineField>
            <InlineField label="Roles" labelWidth={8} invalid={errs.length > 0} error={errs.join('; ')}>
              <Select
                isMulti
                width={32}
                options={roleOptions}
                value={m.roles}
                onChange={(vs) => setMapping(i, { roles: (vs as Array<{ value: string }>).map((v) => v.value) })}
              />
            </InlineField>
            <InlineField label="Tenants" labelWidth={9} tooltip="Comma list; * for every tenant">
              <Input
                aria-label={`mapping ${i} tenants`}
                width={20}
                value={(m.tenants ?? []).join(', ')}
                onChange={(e: ChangeEvent<HTMLInputElement>) => setMapping(i, { tenants: splitList(e.target.value) })}
              />
            </InlineField>
            <Button variant="secondary" icon="trash-alt" aria-label={`remove mapping ${i}`} onClick={() => setJSON({ roleMappings: mappings.filter((_, j) => j !== i) })} />
          </InlineFieldRow>
        );
      })}
      <Button variant="secondary" icon="plus" onClick={() => setJSON({ roleMappings: [...mappings, { roles: ['sre'] }] })}>
        Add role mapping
      </Button>
      <InlineField label="Background roles" labelWidth={24} tooltip="Principal of requests without a user (alerting); default sre">
        <Select
          isMulti
          width={48}
          options={roleOptions}
          value={json.backgroundRoles ?? ['sre']}
          onChange={(vs) => setJSON({ backgroundRoles: (vs as Array<{ value: string }>).map((v) => v.value) })}
        />
      </InlineField>
    </>
  );
}
