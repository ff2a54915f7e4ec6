/**
 * How every entry point ends: its errors become a one-line message and an exit code, never a stack trace
 * (except for a broken invariant, which is a bug). Kept apart from main_cli.ts so that a branch or customer
 * process loads only this, not main's whole module graph.
 *
 * @module
 */

import { UsageError } from "./cli_args.ts";
import { InputError } from "./input.ts";
import { RunFailure } from "./supervisor.ts";

/** The run was interrupted by SIGINT, or terminated by SIGTERM. */
export class Interrupted extends Error {
  constructor(readonly signal: "SIGINT" | "SIGTERM") {
    super(
      `${signal === "SIGINT" ? "interrupted" : "terminated"}: every process stopped, no output written`,
    );
    this.name = "Interrupted";
  }
}

/**
 * Runs an entry point, mapping its errors to exit codes. A child controlled by main ignores SIGINT: a
 * Ctrl-C in a terminal reaches every process of the group, and main is the one that stops them in order.
 */
export async function guarded(
  name: string,
  run: () => Promise<number>,
  options: { control: boolean },
): Promise<number> {
  const ignore = () => {};
  if (options.control) Deno.addSignalListener("SIGINT", ignore);
  try {
    return await run();
  } catch (error) {
    if (error instanceof InputError) console.error(error.message);
    else if (error instanceof UsageError) console.error(`${name}: ${error.message} (see --help)`);
    else if (error instanceof RunFailure || error instanceof Interrupted) {
      console.error(`${name}: ${error.message}`);
    } else if (error instanceof Error && error.name !== "AssertionError") {
      console.error(`${name}: ${error.message}`);
    } else throw error; // A broken invariant is a bug: crash with its stack.
    if (error instanceof Interrupted) return error.signal === "SIGINT" ? 130 : 143;
    return isBadInput(error) ? 2 : 1;
  } finally {
    if (options.control) Deno.removeSignalListener("SIGINT", ignore);
  }
}

/**
 * Whether `error` is the user's to fix: bad input, usage or a missing permission (exit 2). A function of
 * its own, on `unknown`: inlined in guarded(), where the checks before it narrow `error`, `deno check src/`
 * once reported TS2358
 * ("the left-hand side of an 'instanceof' expression must be of type 'any'...") for it, which the full
 * check of `deno task ok` did not.
 */
function isBadInput(error: unknown): boolean {
  // A permission the command line did not grant is the user's to fix, like a wrong flag.
  return error instanceof InputError || error instanceof UsageError ||
    error instanceof Deno.errors.NotCapable;
}
