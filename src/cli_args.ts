/**
 * Command-line helpers shared by the entry points: typed flag values and one error class for misuse.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";

/** The command line cannot be used; the message says which flag and why, on one line. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** `node:util` parseArgs in strict mode, with its errors turned into one-line {@linkcode UsageError}s. */
export function parseFlags<T extends ParseArgsConfig["options"]>(args: readonly string[], options: T) {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError(
      error instanceof Error ? error.message.split("\n")[0] ?? error.message : String(error),
    );
  }
}

/** A non-negative safe integer flag value; `fallback` when the flag is absent. */
export function integerFlag(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(parsed)) {
    throw new UsageError(`--${name}: expected a non-negative integer, got "${value}"`);
  }
  return parsed;
}

/** The longest duration a timer takes (2^31 - 1 ms, about 24.8 days); a longer one fires at once. */
export const DURATION_MAX_MS = 2_147_483_647;

/** A positive integer flag value in milliseconds, at most {@linkcode DURATION_MAX_MS}. */
export function durationFlag(name: string, value: string | undefined, fallback: number): number {
  const parsed = integerFlag(name, value, fallback);
  if (parsed === 0) throw new UsageError(`--${name}: must be at least 1`);
  if (parsed > DURATION_MAX_MS) {
    throw new UsageError(`--${name}: must be at most ${DURATION_MAX_MS} (about 24 days), got ${parsed}`);
  }
  return parsed;
}

/** The highest TCP port. */
export const PORT_MAX = 65_535;

/**
 * A `HOST:PORT` value given as `what` (a flag, such as "--listen"), with its port checked: 1 to
 * {@linkcode PORT_MAX}, or 0 too where `lowest` is 0 (an address to listen on: 0 lets the system pick).
 */
export function addressFlag(what: string, value: string, lowest: 0 | 1 = 1): string {
  const port = /^\S+:(\d+)$/.exec(value)?.[1];
  if (port === undefined) throw new UsageError(`${what}: expected HOST:PORT, got "${value}"`);
  if (Number(port) < lowest || Number(port) > PORT_MAX) {
    throw new UsageError(`${what}: port ${port} of "${value}" is not between ${lowest} and ${PORT_MAX}`);
  }
  return value;
}

/** Parses repeated `ID=HOST:PORT` values into a map from branch id to address. */
export function addressFlags(name: string, values: readonly string[] | undefined): Map<number, string> {
  const addresses = new Map<number, string>();
  for (const value of values ?? []) {
    const match = /^(\d+)=(\S+:\d+)$/.exec(value);
    if (match === null) throw new UsageError(`--${name}: expected ID=HOST:PORT, got "${value}"`);
    const id = Number(match[1]);
    if (addresses.has(id)) throw new UsageError(`--${name}: branch ${id} given twice`);
    addresses.set(id, addressFlag(`--${name}`, match[2] as string));
  }
  return addresses;
}

/** Branch `id`'s port under `--port-base base`, the original's layout (50000 + id): at most PORT_MAX. */
export function basePort(base: number, id: number): number {
  if (base + id > PORT_MAX) {
    throw new UsageError(
      `--port-base: branch ${id} would listen on port ${base + id} (${base} + ${id}), past ${PORT_MAX}`,
    );
  }
  return base + id;
}
