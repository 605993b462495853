// The one Node global the client script uses (no @types/node in this toolchain).
declare const process: { argv: string[]; exit(code: number): never };
