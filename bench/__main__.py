"""`python -m bench`: run the comparative suite (see bench/suite.py)."""

from bench.suite import main

raise SystemExit(main())
