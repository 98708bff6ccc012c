// Builds dist/yjs.bundle.js: the npm `yjs` and `y-websocket` packages (and what they import)
// as one minified ES module for the browser, which the server embeds and serves at /yjs.js for
// the /demo/doc page. One file, so the page needs one request for it and no CDN, and yjs is
// loaded once (two copies of yjs in a page break its type checks).
//
// The output is a function of the lockfile only: esbuild is pinned by it, nothing in the
// banner depends on the time or the machine, and paths stay out of the output. ci.sh rebuilds
// it and fails when the committed file differs.
//
// Every bundled package must be MIT-licensed with the same permission notice; the banner names
// each with its version and copyright lines and carries that notice once, as the licence asks.

import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = `${root}dist/yjs.bundle.js`;

const result = await esbuild.build({
  stdin: {
    contents: "export * from 'yjs';\nexport { WebsocketProvider } from 'y-websocket';\n",
    resolveDir: root,
    sourcefile: 'yjs-entry.js',
  },
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  charset: 'utf8',
  metafile: true,
  write: false,
  logLevel: 'warning',
});

/** The packages the bundle took code from, by name, in a stable order. */
const packages = [
  ...new Set(
    Object.keys(result.metafile.inputs)
      .map((input) => /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1])
      .filter(Boolean),
  ),
].sort();

const licence = (name) => readFileSync(`${root}node_modules/${name}/LICENSE`, 'utf8').replace(/\r\n/g, '\n');
const notice = (text) => text.slice(text.indexOf('Permission is hereby granted')).trim();
const mitNotice = notice(licence('yjs'));

const credits = packages.map((name) => {
  const meta = JSON.parse(readFileSync(`${root}node_modules/${name}/package.json`, 'utf8'));
  const text = licence(name);
  if (meta.license !== 'MIT' || notice(text) !== mitNotice) {
    throw new Error(`${name} is not under the MIT licence this banner carries: check it by hand`);
  }
  const copyright = text
    .slice(text.indexOf('Copyright'), text.indexOf('Permission is hereby granted'))
    .trim()
    .split('\n')
    .map((line) => ` *   ${line.trim()}`)
    .join('\n');
  return ` * ${name}@${meta.version} (MIT)\n${copyright}`;
});

const banner = `/*!
 * yjs and y-websocket for the Switchboard /demo/doc page, bundled by clients/js
 * (npm run build:yjs). Exports everything of yjs, and WebsocketProvider.
 *
${credits.join('\n')}
 *
${mitNotice
  .split('\n')
  .map((line) => (line ? ` * ${line}` : ' *'))
  .join('\n')}
 */
`;

writeFileSync(out, banner + result.outputFiles[0].text);
console.log(`wrote dist/yjs.bundle.js (${packages.join(', ')})`);
