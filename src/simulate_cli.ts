/**
 * `main.ts simulate` (`deno task simulate`): runs seeded simulations (src/simulator.ts) and says how many
 * held, which faults they went through, and the seed of every one that did not, to rerun it exactly.
 *
 * @module
 */

import { integerFlag, parseFlags, UsageError } from "./cli_args.ts";
import { ALL_FAULTS, INJECTED, NO_FAULTS, noneInjected, simulate } from "./simulator.ts";

/** What `main.ts simulate --help` prints. */
export const SIMULATE_USAGE = `Usage: main.ts simulate [options]   (or: deno task simulate [options])

Runs the branches' protocol cores under a simulated network, disk and clock, one run per seed, with every
fault on: links breaking with what is in flight on them, messages delayed, requests sent twice, partitions,
branches pausing, and branches crashing (losing what they had not written) and restarting from their disks. Checks each run's
history and final states as main.ts check does, and prints the seed of each run that fails.

  --seeds N        how many runs (default 1000)
  --first S        the first seed (default 1); a failing seed reruns with --first S --seeds 1
  --branches B     branches per run (default: 1 to 5, by seed)
  --customers C    customers acting at once (default 4)
  --requests R     requests per customer (default 40)
  --reads MODE     commit (default), or local: queries read a branch's own replica once it has applied what
                   their customer has seen, which is linearizable with one customer only (--customers 1)
  --failover       a primary that stops answering is replaced by election (default: branch 1 is the
                   primary for good, as in the branch processes today)
  --no-faults      run without faults

Exit codes: 0 every run held, 1 some did not, 2 bad usage.`;

/** Runs the simulations; returns the exit code. */
export function runSimulate(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    help: { type: "boolean" },
    seeds: { type: "string" },
    first: { type: "string" },
    branches: { type: "string" },
    customers: { type: "string" },
    requests: { type: "string" },
    reads: { type: "string" },
    "no-faults": { type: "boolean" },
    failover: { type: "boolean" },
  });
  if (values.help) {
    console.log(SIMULATE_USAGE);
    return Promise.resolve(0);
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const seeds = integerFlag("seeds", values.seeds, 1_000);
  const first = integerFlag("first", values.first, 1);
  const branches = values.branches === undefined ? undefined : integerFlag("branches", values.branches, 0);
  const customers = integerFlag("customers", values.customers, 4);
  const requests = integerFlag("requests", values.requests, 40);
  if (branches === 0) throw new UsageError("--branches: must be at least 1");
  const reads = values.reads ?? "commit";
  if (reads !== "commit" && reads !== "local") {
    throw new UsageError(`--reads: expected commit or local, got "${reads}"`);
  }
  const faults = values["no-faults"] ? NO_FAULTS : ALL_FAULTS;
  const failover = values.failover ?? false;
  console.log(
    `simulate: ${seeds} runs from seed ${first}, ${branches ?? "1 to 5"} branches, ${customers} customers ` +
      `x ${requests} requests, ${reads} reads, ${values["no-faults"] ? "no faults" : "every fault"}` +
      `${failover ? ", failover" : ""}`,
  );
  const started = performance.now();
  const injected = noneInjected();
  let answered = 0;
  let elections = 0;
  const failed: number[] = [];
  for (let seed = first; seed < first + seeds; seed++) {
    const result = simulate({
      seed,
      branches: branches ?? 1 + (seed % 5),
      customers,
      requests,
      reads,
      faults,
      failover,
    });
    elections += result.elections;
    for (const fault of INJECTED) injected[fault] += result.injected[fault];
    answered += result.history.requests.length;
    if (result.violation !== undefined) {
      failed.push(seed);
      console.log(`seed ${seed}: ${result.violation}`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `faults injected: ${injected.linkBreaks} link breaks, ${injected.partitions} partitions, ` +
      `${injected.crashes} crashes (${injected.lostEntries} unwritten entries lost), ${injected.pauses} pauses, ` +
      `${injected.duplicates} requests sent twice`,
  );
  if (failover) console.log(`${elections} primaries elected`);
  console.log(
    `${answered} requests answered; ${failed.length} violation${failed.length === 1 ? "" : "s"} ` +
      `in ${seeds} runs (${seconds.toFixed(1)} s)`,
  );
  if (failed.length > 0) {
    console.log(
      `rerun one: deno task simulate --first ${failed[0]} --seeds 1${failover ? " --failover" : ""}`,
    );
  }
  return Promise.resolve(failed.length === 0 ? 0 : 1);
}
