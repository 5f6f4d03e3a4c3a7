import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    environment: 'jsdom',
    globals: true,
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test-setup.ts'],
    // @grafana/ui's ESM build imports CommonJS files without extensions (rc-picker); letting Vite
    // transform it resolves them as a bundler would.
    server: { deps: { inline: [/@grafana\//] } },
    // @grafana/ui's icons load asynchronously and warn about act(); the warning is theirs, not ours.
    onConsoleLog: (log) => !log.includes('not wrapped in act'),
  },
});
