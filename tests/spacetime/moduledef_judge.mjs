// The official TypeScript library's own `RawModuleDefV10` type as a judge of our BSATN module definitions.
//
// The library bundles its generated `RawModuleDefV10` (src/lib/autogen/types.ts) without exporting it, so this
// script copies the pinned bundle (`spacetimedb/dist/index.mjs`, unchanged) into a scratch directory with one
// export line added, imports it, and decodes each request with that type: the decoding and re-encoding are the
// library's own code. Usage: node moduledef_judge.mjs <conformance/node_modules> <scratch dir>; then one hex per
// line on stdin, one JSON answer per line on stdout: {"hex": re-encoding, "value": decoded value} or {"error"}.
// Rendering: bigint -> decimal string, Uint8Array -> hex string.

import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';

const [nodeModules, scratch] = process.argv.slice(2);
const bundle = fs.readFileSync(path.join(nodeModules, 'spacetimedb', 'dist', 'index.mjs'), 'utf8');
fs.mkdirSync(scratch, { recursive: true });
const linked = path.join(scratch, 'node_modules');
if (!fs.existsSync(linked)) fs.symlinkSync(path.resolve(nodeModules), linked, 'dir');
const copy = path.join(scratch, 'spacetimedb_with_raw_module_def.mjs');
fs.writeFileSync(copy, `${bundle}\nexport { RawModuleDefV10 as __RawModuleDefV10 };\n`);
const sdk = await import(pathToFileURL(copy).href);
const { BinaryReader, BinaryWriter, __RawModuleDefV10: RawModuleDefV10 } = sdk;

function render(value) {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (Array.isArray(value)) return value.map(render);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, render(v)]));
  }
  return value === undefined ? null : value;
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  try {
    const value = RawModuleDefV10.deserialize(new BinaryReader(Buffer.from(line.trim(), 'hex')));
    const writer = new BinaryWriter(1024);
    RawModuleDefV10.serialize(writer, value);
    const hex = Buffer.from(writer.getBuffer()).toString('hex');
    process.stdout.write(JSON.stringify({ hex, value: render(value) }) + '\n');
  } catch (error) {
    process.stdout.write(JSON.stringify({ error: String(error && error.stack ? error.stack : error) }) + '\n');
  }
}
