"""The runner's TextEncoder encodes exactly as the runtime's native one (js/text_encoder.mjs).

The runner installs its own `TextEncoder` (a subclass of Node's, with a cheaper `encode` per call) before a module
is imported, so every string the module's library writes goes through it. What a module may rely on is the result:
these tests feed both encoders the same inputs — ASCII at and around the loop's length bound, every UTF-8 width,
surrogate pairs, lone surrogates anywhere (U+FFFD), non-string inputs, text beyond the scratch bound — and require
the same bytes, plus the native class's identity (`instanceof`, `encoding`, `encodeInto`).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest

from autopilot_sync.jsmodule.runner import RUNNER_JS

pytestmark = pytest.mark.node

ENCODER_JS = RUNNER_JS.with_name("text_encoder.mjs")

HARNESS = """
import { readFileSync } from 'node:fs';
const Native = globalThis.TextEncoder;
const { TextEncoder: Fast, installTextEncoder } = await import(process.argv[2]);
const native = new Native();
const texts = JSON.parse(readFileSync(0, 'utf8'));
const special = [undefined, null, 12.5, 0, true, { toString: () => 'obj\\u00e9' }, ['a', 'b']];
const mismatches = [];
const check = (label, input, withArg = true) => {
  const want = withArg ? native.encode(input) : native.encode();
  const got = withArg ? new Fast().encode(input) : new Fast().encode();
  if (!(got instanceof Uint8Array) || Buffer.compare(Buffer.from(want), Buffer.from(got)) !== 0) mismatches.push(label);
};
texts.forEach((t, i) => check(`text ${i}`, t));
special.forEach((v, i) => check(`special ${i}`, v));
check('no argument', undefined, false);
for (const n of [0, 1, 63, 64, 65, 1000, 400000]) check(`ascii ${n}`, 'x'.repeat(n));
check('beyond the scratch bound', '\\u00e9'.repeat(400000));
check('lone high surrogate at the end of a long text', 'a'.repeat(100) + '\\ud800');
installTextEncoder();
const installed = new globalThis.TextEncoder();
const into = new Uint8Array(8);
const facts = {
  mismatches,
  installed: globalThis.TextEncoder === Fast,
  enumerable: Object.getOwnPropertyDescriptor(globalThis, 'TextEncoder').enumerable,
  isNative: installed instanceof Native,
  encoding: installed.encoding,
  encodeInto: installed.encodeInto('h\\u00e9', into),
};
process.stdout.write(JSON.stringify(facts));
"""


def _texts() -> list[str]:
    rng = random.Random(18)
    pieces = ["a", "Z", "~", "\x00", "\x7f", "\x80", "é", "\u07ff", "\u0800", "€", "\uffff", "🚀", "\ud800", "\udfff"]
    texts = ["", "stream-1", "sha256:" + "ab" * 32, "ström ✓", "🚀:1", "\ud83d", "\ude80x", "x\ud83d", "\udc00\ud800"]
    for _ in range(400):
        texts.append("".join(rng.choice(pieces) for _ in range(rng.randrange(0, 140))))
    return texts


def test_the_runners_text_encoder_writes_what_the_native_one_writes(tmp_path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    harness = tmp_path / "harness.mjs"
    harness.write_text(HARNESS)
    # Lone surrogates cannot cross as UTF-8 JSON: escape everything outside ASCII (JSON.parse reads \\uXXXX back).
    feed = json.dumps(_texts(), ensure_ascii=True)
    out = subprocess.run(
        [node, str(harness), ENCODER_JS.as_uri()], input=feed, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    facts = json.loads(out)
    assert facts["mismatches"] == []
    assert facts["installed"] is True
    assert facts["enumerable"] is False
    assert facts["isNative"] is True
    assert facts["encoding"] == "utf-8"
    assert facts["encodeInto"] == {"read": 2, "written": 3}
