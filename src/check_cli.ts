/**
 * `main.ts check HISTORY`: checks a history written by `main.ts --history` (see src/checker.ts). Exit 0
 * when it holds, 1 naming the first violation, 2 when the file is missing or malformed.
 *
 * @module
 */

import { checkHistory } from "./checker.ts";
import { parseFlags, UsageError } from "./cli_args.ts";
import { parseHistory } from "./history.ts";
import { InputError } from "./input.ts";

/** What `main.ts check --help` prints. */
export const CHECK_USAGE = `Usage: main.ts check HISTORY

Checks a history written by main.ts --history: log positions unique and dense, real-time order
respected, every reply what replaying the log gives, no event twice, and every branch ending at the
replayed balance. Exit codes: 0 it holds, 1 a violation (named on stderr), 2 a missing or malformed file.`;

/** Runs the check; returns the exit code. */
export async function runCheck(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, { help: { type: "boolean" } });
  if (values.help) {
    console.log(CHECK_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one HISTORY file, got ${positionals.length}`);
  const path = positionals[0] as string;
  const text = await Deno.readTextFile(path).catch((error: Error) => {
    throw new InputError(path, "", `cannot read: ${error.message}`);
  });
  const result = checkHistory(parseHistory(text, path));
  if (!result.ok) {
    console.error(`check: ${path}: ${result.violation}`);
    return 1;
  }
  console.log(`check: ${path} holds: ${result.summary.requests} requests, ${result.summary.updates} updates`);
  return 0;
}
