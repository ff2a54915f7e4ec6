/**
 * One run of the bank: validate the input, start a process per branch and one for the customers, wait
 * until every branch serves, run the customers, write the output, and stop every process.
 *
 * @module
 */

import { AtomicFile } from "./atomic_file.ts";
import type { CustomerAddresses, CustomerInput, CustomerReady } from "./customer_cli.ts";
import { InputError, readScenario, type Scenario, scenarioToJson } from "./input.ts";
import { childCommand, type LaunchContext } from "./launch.ts";
import { type EntryResult, type Format, renderOutput } from "./output.ts";
import { type Child, RunFailure, type Supervisor } from "./supervisor.ts";

/** How to run the bank. */
export interface BankRunOptions {
  readonly inputPath: string;
  readonly outputPath: string;
  readonly format: Format;
  /** When set, branch ID listens on 127.0.0.1:portBase+ID; otherwise on a free port. */
  readonly portBase: number | undefined;
  /** Deadline of every customer request; messages between branches get parts of it. */
  readonly deadlineMs: number;
  /** How long branches may take to start serving. */
  readonly startTimeoutMs: number;
  readonly context: LaunchContext;
  /** Owns the child processes; failing it (on SIGINT, say) ends the run. */
  readonly supervisor: Supervisor;
  /** Progress lines, for --verbose. */
  readonly log: (line: string) => void;
}

const STOP_GRACE_MS = 3_000;

/**
 * Runs the bank. Throws {@linkcode InputError} for bad input or an unwritable output path (before any
 * process starts), {@linkcode RunFailure} when a process fails. The output file is written only after a
 * successful run, and atomically.
 */
export async function runBank(options: BankRunOptions): Promise<void> {
  const scenario = await readScenario(options.inputPath);
  const output = await AtomicFile.reserve(options.outputPath).catch((error: Error) => {
    throw new InputError(options.outputPath, "", `cannot write output: ${error.message}`);
  });
  try {
    const results = await runProcesses(scenario, options);
    await output.commit(renderOutput(results, options.format));
  } catch (error) {
    await output.discard();
    throw error;
  }
}

async function runProcesses(scenario: Scenario, options: BankRunOptions): Promise<EntryResult[]> {
  const { supervisor } = options;
  try {
    const { customer, branches } = startChildren(scenario, options);
    const addresses = await supervisor.within(
      Promise.all(branches.map(listeningAddress)),
      options.startTimeoutMs,
      "every branch listening",
    );
    branches.forEach((child, index) =>
      options.log(`${child.name} (pid ${child.pid}) listening on ${addresses[index]}`)
    );
    const addressOf = new Map(scenario.branches.map(({ id }, index) => [id, addresses[index] as string]));
    await Promise.all(branches.map((child, index) => {
      const peers = [...addressOf].filter(([id]) => id !== scenario.branches[index]?.id);
      return child.send(JSON.stringify({ peers: Object.fromEntries(peers) }));
    }));
    // The customer process connects to every branch while they connect to each other, and is the
    // readiness check: it watches each branch's health until SERVING (main never loads grpc-js).
    await customer.send(
      JSON.stringify({ branches: Object.fromEntries(addressOf) } satisfies CustomerAddresses),
    );
    await supervisor.within(everyBranchServing(customer), options.startTimeoutMs, "every branch serving");
    options.log(`all ${branches.length} branches serving; customer process is pid ${customer.pid}`);
    await customer.send(JSON.stringify({ input: scenarioToJson(scenario) } satisfies CustomerInput));
    const results = await supervisor.race(collectResults(customer, scenario.customers.length));
    options.log(`all ${results.length} customer entries done`);
    return results;
  } finally {
    await supervisor.stopAll(STOP_GRACE_MS);
    options.log("every process stopped");
  }
}

/**
 * Spawns the customer process and one process per branch. The customer process comes first, so that its
 * start-up overlaps the branches'; it then waits on stdin for the addresses and the input.
 */
function startChildren(scenario: Scenario, options: BankRunOptions): { customer: Child; branches: Child[] } {
  const { supervisor, context } = options;
  const deadline = ["--deadline-ms", String(options.deadlineMs)];
  const startTimeout = ["--start-timeout-ms", String(options.startTimeoutMs)];
  // A forward to the primary gets half a request's deadline (and an entry to a backup half of that), so
  // that a stalled branch is reported by name (the link's "did not answer") before the customer's
  // request itself runs out of time.
  const forwardDeadline = ["--deadline-ms", String(Math.max(1, Math.floor(options.deadlineMs / 2)))];
  const ports = scenario.branches.map(({ id }) => options.portBase === undefined ? 0 : options.portBase + id);
  // Free ports are not known in advance, so then the customer may reach any loopback port.
  const customerNet = options.portBase === undefined
    ? ["127.0.0.1"]
    : ports.map((port) => `127.0.0.1:${port}`);
  const customer = supervisor.spawn(
    "customer process",
    childCommand("customer", ["--plan-stdin", ...deadline, ...startTimeout], { context, net: customerNet }),
    { job: true },
  );
  const branches = scenario.branches.map(({ id, balance }, index) => {
    const args = ["--control-stdin", "--id", String(id), "--balance", String(balance)];
    const listen = ["--listen", `127.0.0.1:${ports[index]}`];
    const command = childCommand("branch", [...args, ...listen, ...forwardDeadline, ...startTimeout], {
      context,
      net: ["127.0.0.1"],
    });
    return supervisor.spawn(`branch ${id}`, command, { job: false });
  });
  return { customer, branches };
}

async function everyBranchServing(customer: Child): Promise<void> {
  const line = await customer.nextLine();
  if (line === undefined) throw await customer.failure(" before every branch was serving");
  const ready = JSON.parse(line) as Partial<CustomerReady>;
  if (typeof ready.serving !== "number") {
    throw new RunFailure(`${customer.name} reported ${line}, not readiness`);
  }
}

async function listeningAddress(child: Child): Promise<string> {
  const line = await child.nextLine();
  if (line === undefined) throw await child.failure(" before it reported its address");
  const address = (JSON.parse(line) as { listening?: unknown }).listening;
  if (typeof address !== "string") throw new RunFailure(`${child.name} reported no address: ${line}`);
  return address;
}

async function collectResults(customer: Child, expected: number): Promise<EntryResult[]> {
  const results: EntryResult[] = [];
  for (let line = await customer.nextLine(); line !== undefined; line = await customer.nextLine()) {
    results.push(JSON.parse(line) as EntryResult);
  }
  const status = await customer.exited;
  if (!status.success || results.length !== expected) {
    throw await customer.failure(` after ${results.length} of ${expected} customer entries`);
  }
  return results;
}
