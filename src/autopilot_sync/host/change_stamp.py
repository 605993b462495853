"""Change stamps: one process-wide count, so a table's stamp never repeats, not across tables nor across stores.

A row store (`datastore.RowMap`, `logtable.LogRows`) takes the next value when it is made and on every change of its
rows. A module that keeps values derived from a table between calls (`TableHandle.memo`, e.g. the sync module's
stream heads) records the stamp they match and trusts them only while the stamp is unchanged: any write it did not
make itself (another reducer, a rollback, recovery, a snapshot loaded, a TypeScript module on the same table) moves
the stamp. Process-wide rather than per store: a store made again (recovery starting over, a publish replacing the
tables) starts at a value no earlier store held, so a stale record can never match by accident.
"""

from __future__ import annotations

import itertools

#: The next stamp (a C-level counter: ~40 ns per change of a row).
next_stamp = itertools.count(1).__next__
