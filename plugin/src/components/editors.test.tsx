import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';

import { ConfigEditor } from './ConfigEditor';
import { QueryEditor } from './QueryEditor';

describe('QueryEditor', () => {
  const base = { refId: 'A', queryType: 'top_users' as const, tenant: '', meter: 'ai_tokens' };

  it('edits the tenant and runs the query on blur', () => {
    const onChange = vi.fn();
    const onRunQuery = vi.fn();
    render(<QueryEditor query={base} onChange={onChange} onRunQuery={onRunQuery} datasource={{} as any} />);
    const tenant = screen.getByPlaceholderText('all tenants');
    fireEvent.change(tenant, { target: { value: 'acme' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ queryType: 'top_users', tenant: 'acme', period: 'day' }));
    fireEvent.blur(tenant);
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('says when a query type needs a tenant', () => {
    render(<QueryEditor query={base} onChange={vi.fn()} onRunQuery={vi.fn()} datasource={{} as any} />);
    expect(screen.getByText('required')).toBeTruthy();
  });

  it('shows the meter only for query types that read one', () => {
    const { rerender } = render(<QueryEditor query={base} onChange={vi.fn()} onRunQuery={vi.fn()} datasource={{} as any} />);
    expect(screen.queryByPlaceholderText('ai_tokens')).not.toBeNull();
    rerender(<QueryEditor query={{ ...base, queryType: 'audit' }} onChange={vi.fn()} onRunQuery={vi.fn()} datasource={{} as any} />);
    expect(screen.queryByPlaceholderText('ai_tokens')).toBeNull();
  });
});

describe('ConfigEditor', () => {
  const options = {
    id: 1,
    uid: 'u',
    orgId: 1,
    name: 'usagemeter',
    type: 'usagemeter-usagemeter-datasource',
    typeName: '',
    typeLogoUrl: '',
    access: 'proxy',
    url: '',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    readOnly: false,
    withCredentials: false,
    version: 1,
    jsonData: { exporterUrl: 'http://127.0.0.1:9477', roleMappings: [{ email: '*@acme.example', roles: ['saas_admin'] }] },
    secureJsonFields: { apiToken: true },
    secureJsonData: {},
  } as any;

  it('edits the exporter URL in jsonData', () => {
    const onOptionsChange = vi.fn();
    render(<ConfigEditor options={options} onOptionsChange={onOptionsChange} />);
    fireEvent.change(screen.getByPlaceholderText('http://127.0.0.1:9477'), { target: { value: 'http://usagemeter:9477' } });
    expect(onOptionsChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ jsonData: expect.objectContaining({ exporterUrl: 'http://usagemeter:9477' }) })
    );
  });

  it('keeps the token secret and can reset it', () => {
    const onOptionsChange = vi.fn();
    render(<ConfigEditor options={options} onOptionsChange={onOptionsChange} />);
    expect(screen.getByDisplayValue('configured')).toBeTruthy();
    fireEvent.click(screen.getByText('Reset'));
    expect(onOptionsChange).toHaveBeenLastCalledWith(expect.objectContaining({ secureJsonFields: { apiToken: false } }));
  });

  it('flags a tenant-scoped mapping without tenants, and adds mappings', () => {
    const onOptionsChange = vi.fn();
    render(<ConfigEditor options={options} onOptionsChange={onOptionsChange} />);
    expect(screen.getByText(/list them/)).toBeTruthy();
    fireEvent.click(screen.getByText('Add role mapping'));
    const next = onOptionsChange.mock.calls.at(-1)![0];
    expect(next.jsonData.roleMappings).toHaveLength(2);
  });
});
