// ESM loader hooks for the module runner (issue 18, ADR 0003).
//
// Why: a built SpacetimeDB TypeScript module keeps `import ... from 'spacetime:sys@2.0'` as a real import, the
// artifact `spacetime build` publishes. Node cannot resolve that scheme, so these hooks map it to a shim whose
// exports forward to the synchronous syscalls the runner installs on `globalThis.__stdbSys` before the import.
// They also lower the one `using` declaration form the library bundle contains, which Node 20 cannot parse.

import { builtinModules } from 'node:module';

const SYS_2_0 = [
  'moduleHooks', 'register_hooks', 'table_id_from_name', 'index_id_from_name', 'datastore_table_row_count',
  'datastore_table_scan_bsatn', 'datastore_index_scan_range_bsatn', 'row_iter_bsatn_advance',
  'row_iter_bsatn_close', 'datastore_insert_bsatn', 'datastore_update_bsatn',
  'datastore_delete_by_index_scan_range_bsatn', 'datastore_delete_all_by_eq_bsatn',
  'volatile_nonatomic_schedule_immediate', 'console_log', 'console_timer_start', 'console_timer_end', 'identity',
  'get_jwt_payload', 'procedure_http_request', 'procedure_start_mut_tx', 'procedure_commit_mut_tx',
  'procedure_abort_mut_tx', 'datastore_index_scan_point_bsatn', 'datastore_delete_by_index_scan_point_bsatn',
];
const SYS_2_1 = ['datastore_clear'];
const SHIMS = { 'spacetime:sys@2.0': SYS_2_0, 'spacetime:sys@2.1': SYS_2_1 };

function shimSource(names) {
  const lines = ['const s = globalThis.__stdbSys;'];
  for (const name of names) lines.push(`export const ${name} = s.${name};`);
  return lines.join('\n');
}

// Everything imported after the hooks are registered is the module's: it may not reach Node's built-ins (files,
// processes, network); SpacetimeDB's V8 host has none of them either.
const BUILTINS = new Set(builtinModules);

export async function resolve(specifier, context, nextResolve) {
  if (Object.hasOwn(SHIMS, specifier)) return { url: specifier, shortCircuit: true };
  if (specifier.startsWith('node:') || BUILTINS.has(specifier)) {
    throw new Error(`a module cannot import ${specifier}: it reaches the host only through spacetime:sys`);
  }
  if (specifier.startsWith('spacetime:sys@')) throw new Error(`unsupported syscall module version: ${specifier}`);
  return nextResolve(specifier, context);
}

// The module file is an ES module whatever a nearby package.json says (`spacetime build` output is `.js`).
let entry = null;
export function initialize(data) {
  entry = data?.entry ?? null;
}

export async function load(url, context, nextLoad) {
  if (Object.hasOwn(SHIMS, url)) return { format: 'module', source: shimSource(SHIMS[url]), shortCircuit: true };
  const result = await nextLoad(url, url === entry ? { ...context, format: 'module' } : context);
  if (result.format !== 'module' || result.source == null) return result;
  const text = typeof result.source === 'string' ? result.source : new TextDecoder().decode(result.source);
  if (!USING.test(text)) return result;
  return { ...result, source: lowerUsing(text) };
}

// `using NAME = EXPR;` as a statement; the library bundle has exactly this form (in `tableIterator`).
const USING = /^([ \t]*)using\s+([A-Za-z_$][\w$]*)\s*=\s*([^;\n]+);/m;

// Lower each `using x = e;` to `const x = e; try { <rest of block> } finally { x?.[Symbol.dispose]?.(); }`.
// A best-effort lowering: braces inside strings, templates, comments or regexes after the declaration would confuse it.
// Built modules never need it (esbuild lowers `using` at build time); a newer Node makes it unnecessary.
function lowerUsing(text) {
  let out = text;
  for (let m = USING.exec(out); m !== null; m = USING.exec(out)) {
    const [whole, indent, name, expr] = m;
    const start = m.index + whole.length;
    let depth = 0;
    let end = -1;
    for (let i = start; i < out.length; i++) {
      const c = out[i];
      if (c === '{') depth++;
      else if (c === '}') {
        if (depth === 0) { end = i; break; }
        depth--;
      }
    }
    if (end < 0) throw new SyntaxError(`cannot lower 'using ${name}': enclosing block not found`);
    out = out.slice(0, m.index) + `${indent}const ${name} = ${expr}; try {` + out.slice(start, end) +
      `} finally { ${name}?.[Symbol.dispose]?.(); }\n` + out.slice(end);
  }
  return out;
}
