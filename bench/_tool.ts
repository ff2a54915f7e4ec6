/**
 * The command line of the benchmark's scripts (bench.ts, faults.ts).
 *
 * @module
 */

import type { ParseArgsConfig } from "node:util";
import { parseFlags, UsageError } from "../src/cli_args.ts";

/**
 * The flags of a tool that takes no positional arguments; on a bad command line, exits 2 after one line
 * naming `tool` and the problem, and `usage`.
 */
export function toolFlags<T extends ParseArgsConfig["options"]>(tool: string, usage: string, options: T) {
  try {
    const { values, positionals } = parseFlags(Deno.args, options);
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    return values;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${tool}: ${error.message}\n${usage}`);
    Deno.exit(2);
  }
}
