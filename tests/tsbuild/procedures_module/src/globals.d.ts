// The module runs in SpacetimeDB's host, not in a browser or Node: the only global it gets beyond ES2022 is the
// `console` the library installs (each level becomes a `console_log` syscall with that level).
declare const console: {
  log(...data: unknown[]): void;
  info(...data: unknown[]): void;
  warn(...data: unknown[]): void;
  error(...data: unknown[]): void;
  debug(...data: unknown[]): void;
  trace(...data: unknown[]): void;
};
