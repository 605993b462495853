// The library's runtime treats an index as unique when its columns are a subset of a unique constraint's
// (`spacetimedb/server` runtime: `columnSet.isSubsetOf(constraint columns)`), and then offers only `find` and a point
// `delete`, never `filter`, whatever the index's declared type says. The sync module's pairs are unique
// ((stream_id, seq) of `sync_event`, (stream_id, reader_identity) of `stream_reader`), so their indexes — and the
// single-column `stream_id` indexes inside them — are used through this view.

/** An index the library's runtime serves as unique: point lookups and point deletes. */
export interface UniqueView<Row> {
  find(key: unknown): Row | null;
  delete(key: unknown): boolean;
}

/** The runtime's unique view of an index its declared type calls ranged (see above). */
export function uniqueView<Row>(index: unknown): UniqueView<Row> {
  return index as UniqueView<Row>;
}
