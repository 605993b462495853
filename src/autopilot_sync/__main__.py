"""`python -m autopilot_sync` is the `autopilot-sync` command (used to start child services with this interpreter)."""

from autopilot_sync.launch import main

main()
