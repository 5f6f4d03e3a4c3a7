// Bundles src/module.ts into dist/module.js as an AMD module, the way Grafana loads plugins:
// Grafana provides @grafana/*, react and react-dom at run time, so they stay external.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

const externals = ['@grafana/data', '@grafana/runtime', '@grafana/ui', '@grafana/schema', '@emotion/css', 'react', 'react-dom', 'rxjs', 'lodash'];

await build({
  entryPoints: ['src/module.ts'],
  outfile: 'dist/module.js',
  bundle: true,
  format: 'cjs', // wrapped in define() below
  platform: 'browser',
  target: 'es2020',
  minify: true,
  sourcemap: true,
  external: externals,
  jsx: 'transform',
  logLevel: 'warning',
  banner: { js: `define(${JSON.stringify(externals)}, function(${externals.map((_, i) => `__e${i}`).join(', ')}) { var module = { exports: {} }, exports = module.exports; var require = function(n) { return ({${externals.map((e, i) => `${JSON.stringify(e)}: __e${i}`).join(', ')}})[n]; };` },
  footer: { js: 'return module.exports; });' },
});
mkdirSync('dist/img', { recursive: true });
copyFileSync('src/img/logo.svg', 'dist/img/logo.svg');
