"""The twin's pure rules compute what the Python contract computes, byte for byte (issue 18 item 3, pure part).

Canonical JSON is where two languages differ most (number formatting, key order, escapes, error messages), so the
twin's own `canonical.ts`, `chain.ts` and `nostr.ts` are bundled into a small Node program and fed the same inputs
as `contract/canonical.py`, `contract/stream_chain.py` and `nostr/keys.py`: the payload-hash vectors, the
stream-chain vectors of docs/protocol.md, hand-picked edge cases and a seeded batch of random JSON texts, valid
and broken. Every canonical text, hash, chain value and error message must be the same.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_stream_chain import doc_vectors

from autopilot_sync.contract import stream_chain
from autopilot_sync.contract.canonical import CanonicalJsonError, canonicalize_text, nests_deeper_than, payload_hash
from autopilot_sync.nostr.errors import NostrKeyError
from autopilot_sync.nostr.keys import PublicKey, SecretKey
from typescript_twin import TWIN_DIR, build_twin, node_available

pytestmark = pytest.mark.node

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "payload_hash.json").read_text())["vectors"]

HARNESS = """
import { readFileSync } from 'node:fs';
import { canonicalizeText, nestsDeeperThan, payloadHash } from '@SRC@/canonical';
import { genesis, link } from '@SRC@/chain';
import { nostrPubkeyOf, npub } from '@SRC@/nostr';

const answer = (fn) => { try { return { ok: fn() }; } catch (e) { return { error: e.message }; } };
const cases = JSON.parse(readFileSync(0, 'utf8'));
const out = cases.map(([kind, a]) => {
  if (kind === 'canonical') return answer(() => { const c = canonicalizeText(a); return [c, payloadHash(c)]; });
  if (kind === 'depth') return answer(() => nestsDeeperThan(a[0], a[1]));
  if (kind === 'genesis') return answer(() => genesis(a[0], BigInt(a[1])));
  if (kind === 'link') return answer(() => link(a[0], a[1], BigInt(a[2]), BigInt(a[3]), a[4], a[5], a[6]));
  if (kind === 'pubkey') return answer(() => { const k = nostrPubkeyOf({ sub: a }); return k && [k, npub(k)]; });
  return { error: 'unknown case ' + kind };
});
process.stdout.write(JSON.stringify(out));
"""

EDGE_TEXTS = [
    "",
    " ",
    "[1,]",
    '{"a" 1}',
    '{"a":1 "b":2}',
    "{1:2}",
    '"abc',
    '"a\x01"',
    '"\\x"',
    '"\\u12g4"',
    '"\\u12"',
    '"abc\\',
    "1 2",
    "[1 2]",
    "nul",
    "-",
    "01",
    "1.",
    "1e",
    '{"a":}',
    "[",
    "{",
    '{"a"',
    "\ufeff1",
    '{"a":1,}',
    "[1,2",
    "tru",
    "NaN",
    "[Infinity]",
    "-Infinity",
    "1e400",
    "-1e400",
    '"\\ud800"',
    '{"\\udc00":1}',
    '"\\ud83d\\ude00 \\u00e9 \x7f \\u001f \\/ \\b\\f\\n\\r\\t"',
    "1" + "0" * 4300,
    "1" + "0" * 4299,
    "-" + "1" * 4301,
    "[-0, -0.0, 5e-324, 0e0, 1E2, 0.0001, 0.00001, 1e16, 1e15, 123456789012345678901234567890]",
    "[1.5e300, 1e-7, 0.1, 100.0, 2.5E-5, 1234567890123456.0, 12345678901234567.0, 0.30000000000000004]",
    '{"b":1,"a":2,"b":3}',
    '{"\\uffff":1,"\\ud800\\udc00":2,"z":3,"é":4}',
    ' \t\n\r[ 1 , { "k" : [ ] } ] \n',
    "[" * 100 + "]" * 100,
    "[" * 1100 + "]" * 1100,
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return rng.choice([None, True, False])
    if choice == 1:
        return rng.randrange(-(10 ** rng.randrange(1, 30)), 10 ** rng.randrange(1, 30))
    if choice == 2:
        return rng.choice([rng.random() * 10 ** rng.randrange(-30, 30), -rng.random(), float(rng.randrange(1000))])
    if choice in (3, 4, 5):
        alphabet = 'aZ09 "\\/\n\t\x00\x1f\x7féü✓€🚀\u2028\ufeff'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if choice in (6, 7):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(_random_value(rng, 4)): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _random_texts(count: int) -> list[str]:
    rng = random.Random(18)
    texts = []
    for _ in range(count):
        text = json.dumps(_random_value(rng), indent=rng.choice([None, 0, 2]), ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.3 and text:  # break it: cut it short or splice in a stray character
            at = rng.randrange(len(text))
            text = text[:at] if rng.random() < 0.5 else text[:at] + rng.choice(',:]}"\\x') + text[at:]
        texts.append(text)
    return texts


def _python_canonical(text: str) -> dict[str, Any]:
    try:
        canonical = canonicalize_text(text)
    except CanonicalJsonError as exc:
        return {"error": str(exc)}
    return {"ok": [canonical, payload_hash(canonical)]}


def _python_pubkey(subject: str) -> dict[str, Any]:
    try:
        key = PublicKey.from_hex(subject)
    except NostrKeyError:
        return {"ok": None}
    return {"ok": [key.hex, key.npub]}


@pytest.fixture(scope="module")
def run_twin(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not node_available():
        pytest.skip("node and npm are needed to build the TypeScript twin")
    build_twin(tmp_path_factory.getbasetemp().parent / "typescript-modules")  # installs esbuild when needed
    work = tmp_path_factory.mktemp("twin-pure")
    entry = work / "harness.mjs"
    entry.write_text(HARNESS.replace("@SRC@", str(TWIN_DIR / "src")))
    bundle = work / "harness.bundle.mjs"
    esbuild = TWIN_DIR / "node_modules" / ".bin" / "esbuild"
    subprocess.run(
        [str(esbuild), str(entry), "--bundle", "--format=esm", "--platform=node", f"--outfile={bundle}"],
        check=True,
        capture_output=True,
    )

    def run(cases: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        done = subprocess.run(
            ["node", str(bundle)], input=json.dumps(cases), capture_output=True, text=True, timeout=120, check=True
        )
        answers: list[dict[str, Any]] = json.loads(done.stdout)
        return answers

    return run


def _compare(run_twin: Any, cases: list[tuple[str, Any]], expected: list[dict[str, Any]]) -> None:
    answers = run_twin(cases)
    differ = [(case, want, got) for case, want, got in zip(cases, expected, answers, strict=True) if want != got]
    assert not differ, "\n".join(f"{c!r:.200}\n  python: {w!r:.300}\n  twin:   {g!r:.300}" for c, w, g in differ[:10])


def test_canonical_json_vectors_and_edge_cases_match_the_python_contract(run_twin: Any) -> None:
    texts = [json.dumps(v["value"], indent=3) for v in VECTORS] + EDGE_TEXTS
    _compare(run_twin, [("canonical", t) for t in texts], [_python_canonical(t) for t in texts])


def test_canonical_json_of_random_valid_and_broken_texts_matches_the_python_contract(run_twin: Any) -> None:
    texts = _random_texts(3000)
    _compare(run_twin, [("canonical", t) for t in texts], [_python_canonical(t) for t in texts])


def test_payload_depth_is_counted_the_same_way(run_twin: Any) -> None:
    cases: list[tuple[str, Any]] = [
        ("depth", [text, limit])
        for text in ('[[["[[[["]]]', '{"a":{"b":[1]}}', '["\\"[[[["]', "[" * 70 + "]" * 70)
        for limit in (1, 2, 3, 64)
    ]
    _compare(run_twin, cases, [{"ok": nests_deeper_than(text, limit)} for _, (text, limit) in cases])


def test_stream_chain_values_match_the_protocol_vectors(run_twin: Any) -> None:
    vectors = doc_vectors()
    cases: list[tuple[str, Any]] = [("genesis", [v["stream_id"], v["epoch"]]) for v in vectors["genesis"]]
    expected = [{"ok": v["chain"]} for v in vectors["genesis"]]
    for v in vectors["links"]:
        fields = [v[k] for k in ("prev", "stream_id", "epoch", "seq", "kind", "idempotency_key", "payload_hash")]
        cases.append(("link", fields))
        expected.append({"ok": v["chain"]})
    unicode_link = [stream_chain.genesis("ström ✓", 3), "ström ✓", 3, 2**63, "kïnd", "🚀:1", "sha256:" + "ab" * 32]
    cases.append(("link", unicode_link))
    expected.append({"ok": stream_chain.link(*unicode_link)})  # type: ignore[arg-type]
    _compare(run_twin, cases, expected)


def test_nostr_subjects_become_the_same_presence_keys(run_twin: Any) -> None:
    rng = random.Random(7)
    subjects = [SecretKey.generate().public_key().hex for _ in range(20)]
    subjects += [f"{rng.getrandbits(256):064x}" for _ in range(40)]  # about half are not on the curve
    subjects += ["f" * 64, "0" * 64, "A" * 64, "abc", ""]
    _compare(run_twin, [("pubkey", s) for s in subjects], [_python_pubkey(s) for s in subjects])
