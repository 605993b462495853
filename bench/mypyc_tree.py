"""A mypyc-compiled copy of a source tree, to A/B the compiled hot path against the pure-Python one.

`python -m bench.mypyc_tree --out /tmp/cmp/new [--commit HEAD] [--modules host/engine.py,...]` exports `src` of the
commit (`git archive`) into `<out>/src` and compiles the listed modules there in place with mypyc (`mypycify`,
opt level 3), so `PYTHONPATH=<out>/src` imports the extension modules and a plain export of the same commit on
`PYTHONPATH` imports the `.py` files. Then compare interleaved, as "Round 4 — compiled" in docs/performance.md did:
`python -m bench.engine_calls` alternating the two trees, or `python -m bench.percall_ab --old <plain>/src` with
`PYTHONPATH=<out>/src`.

Why a scratch copy and not the working tree: an extension module next to its `.py` wins the import, so a build
left in `src/` would go stale silently the moment the `.py` is edited. Needs setuptools importable (not a project
dependency: `uv pip install setuptools` into a scratch venv, or `PYTHONPATH` to a folder holding it) and gcc with
the Python headers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

#: What "Round 4 — compiled" measured: the reducer, the row codec, the row store, the transaction and its log record,
#: the engine's call path, the wire messages and the SDK's message path (all compile unchanged except
#: `host/engine.py`'s `del` of a parameter, which mypyc refuses and this script rewrites in the copy).
DEFAULT_MODULES = (
    "spacetime/bsatn.py,spacetime/values.py,spacetime/rowlist.py,spacetime/messages.py,spacetime/frames.py,"
    "host/transaction.py,host/tx_record.py,host/datastore.py,host/engine.py,host/hosted_module.py,host/caller.py,"
    "host/call_outcome.py,module/reducers.py,module/auth.py,module/config.py,module/limits.py,"
    "contract/canonical.py,contract/stream_chain.py,client/session.py,client/cache.py,client/updates.py,"
    "client/schema.py,client/results.py"
)

_BUILD = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(name="mypyc-tree", ext_modules=mypycify(sys.argv[1:], opt_level="3"), script_args=["build_ext", "--inplace"])
"""

_MYPY_INI = "[mypy]\npython_version = 3.11\n[mypy-bech32.*,brotli.*,blake3.*]\nignore_missing_imports = True\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mypyc_tree", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="scratch folder (its src/ is replaced)")
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--modules", default=DEFAULT_MODULES, help="comma-separated, relative to autopilot_sync/")
    args = parser.parse_args(argv)
    src = args.out / "src"
    subprocess.run(["rm", "-rf", str(src)], check=True)
    args.out.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", args.commit, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(args.out)], input=archive, check=True)
    engine = src / "autopilot_sync/host/engine.py"
    engine.write_text(engine.read_text().replace("del sequence  #", "_ = sequence  #"))
    (src / "mypy.ini").write_text(_MYPY_INI)
    modules = [f"autopilot_sync/{name.strip()}" for name in args.modules.split(",") if name.strip()]
    print(f"compiling {len(modules)} modules with mypyc …", file=sys.stderr, flush=True)
    started = time.monotonic()
    cpu = os.times()
    subprocess.run([sys.executable, "-c", _BUILD, *modules], cwd=src, check=True, stdout=subprocess.DEVNULL)
    done = os.times()
    children = done.children_user + done.children_system - cpu.children_user - cpu.children_system
    print(f"built in {time.monotonic() - started:.0f} s wall, {children:.0f} s CPU: PYTHONPATH={src}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
