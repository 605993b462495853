"""The database commands shaped after the `spacetime` CLI: `sql`, `call`, `subscribe`, `logs`, `token`, `server`.

Split by job: `servers.py` keeps the named servers (`cli.toml` in the user's config dir), `target.py` turns the
shared options (`--server`, `--token`, `--anonymous`, `--key-file`, `--scope`) into a base URL and a token,
`answers.py` makes the host's non-2xx answers one line saying what to do; each command lives in its own module and is
a thin click wrapper over them. Commands other helpers add (`publish`, `delete`) reuse the same three.
"""
