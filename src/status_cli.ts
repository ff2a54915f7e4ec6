/**
 * `main.ts status HOST:PORT ...`: asks running branches where they stand (Branch.status) and prints one
 * line each: role, view, log, commit and disk positions, balance, and at the primary each backup as it
 * sees it. Exit 0 when every branch answered, 1 when one did not.
 *
 * @module
 */

import { addressFlag, durationFlag, parseFlags, UsageError } from "./cli_args.ts";
import { BranchClient, type WireStatus } from "./transport.ts";

/** What `main.ts status --help` prints. */
export const STATUS_USAGE = `Usage: main.ts status HOST:PORT ... [--json] [--deadline-ms MS]

Asks each branch where it stands and prints a line per branch: its role (primary, backup, candidate, or starting),
view, the last log position it applied, the commit position it knows, the last position on its disk,
its balance, whether it serves customers, and at the primary each backup (live or not, and the last
position the primary knows to be on its disk).

  --json            one JSON object per branch instead (BranchStatus of proto/bank.proto)
  --deadline-ms MS  deadline of each call (default 2000)

Exit codes: 0 every branch answered, 1 one did not (named on stderr), 2 usage.`;

const HEADER =
  "address               branch  role      view  position  commit  synced  balance  serving  backups";

/** Runs the command; returns the exit code. */
export async function runStatus(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    json: { type: "boolean" },
    "deadline-ms": { type: "string" },
    help: { type: "boolean" },
  });
  if (values.help) {
    console.log(STATUS_USAGE);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError("expected at least one HOST:PORT");
  for (const address of positionals) addressFlag("address", address);
  const deadlineMs = durationFlag("deadline-ms", values["deadline-ms"], 2_000);
  const answers = await Promise.all(positionals.map(async (address) => {
    const client = new BranchClient(address);
    try {
      return { address, status: await client.status(deadlineMs) };
    } catch (error) {
      return { address, error: (error as Error).message };
    } finally {
      client.close();
    }
  }));
  if (!values.json) console.log(HEADER);
  for (const answer of answers) {
    if ("error" in answer) console.error(`status: ${answer.address}: ${answer.error}`);
    else console.log(values.json ? JSON.stringify(answer.status) : line(answer.address, answer.status));
  }
  return answers.some((answer) => "error" in answer) ? 1 : 0;
}

/** One branch as a line under HEADER. */
function line(address: string, status: WireStatus): string {
  const backups = status.backups.map((backup) =>
    `${backup.id} ${backup.live ? "live" : "down"} at ${backup.matched}`
  ).join(", ");
  return [
    address.padEnd(21),
    String(status.id).padEnd(7),
    status.role.padEnd(9),
    String(status.view).padEnd(5),
    String(status.position).padEnd(9),
    String(status.commit).padEnd(7),
    String(status.synced).padEnd(7),
    String(status.balance).padEnd(8),
    (status.serving ? "yes" : "no").padEnd(8),
    backups === "" ? "-" : backups,
  ].join(" ");
}
