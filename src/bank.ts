/**
 * One run of the bank: validate the input, start a process per branch and one for the customers, wait
 * until every branch serves, run the customers, write the output, and stop every process.
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { AtomicFile } from "./atomic_file.ts";
import { primaryOf, type Propagation } from "./branch_core.ts";
import type { BackupAddress, BranchPlan } from "./branch_cli.ts";
import { basePort } from "./cli_args.ts";
import { CLOCK_FILE_NAMES, type ClockFiles, renderClockFiles } from "./clock_files.ts";
import { type Outcome, renderDiagram } from "./diagram.ts";
import type {
  CustomerAddress,
  CustomerClocks,
  CustomerFinals,
  CustomerInput,
  CustomerReady,
  CustomerResult,
} from "./customer_cli.ts";
import type { TimedResult } from "./customer_run.ts";
import { type HistoryFinal, historyOf, renderHistory } from "./history.ts";
import { InputError, readScenario, type Scenario, scenarioToJson } from "./input.ts";
import { childCommand, type LaunchContext } from "./launch.ts";
import { type Format, renderOutput } from "./output.ts";
import { type ProcessEvents, requestKey, type RequestRef } from "./lamport.ts";
import { type Child, RunFailure, type Supervisor } from "./supervisor.ts";

/** How to run the bank. */
export interface BankRunOptions {
  readonly inputPath: string;
  readonly outputPath: string;
  /** Whether every customer entry runs at once, rather than one after another. */
  readonly concurrent: boolean;
  /** Whether the branches replace a primary that stops answering by election (branch.ts --failover). */
  readonly failover?: boolean;
  /** When the primary answers an update (see Propagation in src/branch_core.ts). */
  readonly propagation: Propagation;
  /** Whether requests carry what the customers have seen (Request.after). */
  readonly session: boolean;
  /** Where to write the run's history (src/history.ts), if anywhere. */
  readonly historyPath: string | undefined;
  /** A directory to write the run's Lamport clock files in (src/clock_files.ts), if any; made if need be. */
  readonly clockOutputDir: string | undefined;
  /** Where to write the run's space-time diagram (src/diagram.ts), if anywhere. */
  readonly diagramPath: string | undefined;
  readonly format: Format;
  /** When set, branch ID listens on 127.0.0.1:portBase+ID; otherwise on a free port. */
  readonly portBase: number | undefined;
  /** Deadline of every customer request; messages between branches get parts of it. */
  readonly deadlineMs: number;
  /** How long branches may take to start serving. */
  readonly startTimeoutMs: number;
  /**
   * Where the branches keep their logs, a directory each (branch-ID); a branch finds its log of an earlier
   * run there and goes on from it. When undefined, a fresh temporary directory, removed after the run.
   */
  readonly dataDir: string | undefined;
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
  const { portBase } = options;
  // Checked with the input, before anything is written or started: basePort() throws a UsageError.
  if (portBase !== undefined) { for (const { id } of scenario.branches) basePort(portBase, id); }
  const files = await RunFiles.reserve(options);
  let dataDir: string | undefined;
  try {
    dataDir = await dataDirectory(options.dataDir);
    options.log(`branch data in ${dataDir}`);
    await runProcesses(scenario, { ...options, dataDir }, async ({ results, finals, clocks }) => {
      // Every text is made before the first file is written.
      const eventIdOf = eventIds(scenario, results);
      await files.write({
        output: renderOutput(results, options.format),
        history: files.history === undefined ? "" : renderHistory(historyOf(scenario, results, finals)),
        clocks: files.clocks === undefined ? undefined : renderClockFiles(clocks, eventIdOf),
        diagram: files.diagram === undefined ? "" : renderDiagram(clocks, {
          title: `The bank's run of ${options.inputPath}`,
          outcomes: outcomes(results),
          eventIdOf,
        }),
      });
    });
    // Every file is written, every child stopped, and no signal came: only now is each put in place.
    await files.publish();
  } catch (error) {
    await files.discard();
    throw error;
  } finally {
    if (options.dataDir === undefined && dataDir !== undefined) {
      await Deno.remove(dataDir, { recursive: true });
    }
  }
}

/** A file of a run's, or a set of them, written in full first and then put in place. */
interface Publishable {
  publish(): Promise<void>;
  /** Removes what was written; the target is left as it was. */
  discard(): Promise<void>;
}

/**
 * The files a run writes: the output and, if asked for, the history, the clock files and the diagram. All
 * are reserved before anything starts, all are written before any is put in place, and none is put in
 * place if the run fails (a signal included) before then: a failed run replaces nothing.
 */
class RunFiles {
  readonly #all: readonly Publishable[];

  private constructor(
    all: readonly Publishable[],
    readonly output: AtomicFile,
    readonly history: AtomicFile | undefined,
    readonly clocks: ClockFileSet | undefined,
    readonly diagram: AtomicFile | undefined,
  ) {
    this.#all = all;
  }

  /** Reserves each file; throws an InputError naming the first that cannot be, after letting go of the rest. */
  static async reserve(options: BankRunOptions): Promise<RunFiles> {
    const { outputPath, historyPath, clockOutputDir, diagramPath } = options;
    refuseSharedPaths(options);
    const all: Publishable[] = [];
    const reserve = async <T extends Publishable>(
      path: string,
      what: string,
      open: (path: string) => Promise<T>,
    ): Promise<T> => {
      try {
        const file = await open(path);
        all.push(file);
        return file;
      } catch (error) {
        for (const file of all) await file.discard();
        throw new InputError(path, "", `cannot write ${what}: ${(error as Error).message}`);
      }
    };
    const maybe = <T extends Publishable>(
      path: string | undefined,
      what: string,
      open: (path: string) => Promise<T>,
    ) => path === undefined ? Promise.resolve(undefined) : reserve(path, what, open);
    const output = await reserve(outputPath, "output", AtomicFile.reserve);
    const history = await maybe(historyPath, "history", AtomicFile.reserve);
    const clocks = await maybe(clockOutputDir, "clock files", ClockFileSet.reserve);
    const diagram = await maybe(diagramPath, "diagram", AtomicFile.reserve);
    return new RunFiles(all, output, history, clocks, diagram);
  }

  /** Writes every file's text in full, beside its target. */
  async write(texts: { output: string; history: string; clocks: ClockFiles | undefined; diagram: string }) {
    await this.output.write(texts.output);
    await this.history?.write(texts.history);
    if (texts.clocks !== undefined) await this.clocks?.write(texts.clocks);
    await this.diagram?.write(texts.diagram);
  }

  async publish(): Promise<void> {
    for (const file of this.#all) await file.publish();
  }

  async discard(): Promise<void> {
    for (const file of this.#all) await file.discard();
  }
}

/**
 * Refuses two of a run's files at one path (the second would replace the first), or one at the input's:
 * an InputError naming the path and the two flags.
 */
function refuseSharedPaths(options: BankRunOptions): void {
  const { inputPath, outputPath, historyPath, diagramPath, clockOutputDir: dir } = options;
  const named: [string, string][] = [[inputPath, "the input"], [outputPath, "--output"]];
  if (historyPath !== undefined) named.push([historyPath, "--history"]);
  if (diagramPath !== undefined) named.push([diagramPath, "--diagram"]);
  if (dir !== undefined) {
    const paths = [dir, ...CLOCK_FILE_NAMES.map((name) => join(dir, name))];
    named.push(...paths.map((path): [string, string] => [path, "--clock-output"]));
  }
  const seen = new Map<string, string>();
  for (const [path, flag] of named) {
    const absolute = resolve(path);
    const earlier = seen.get(absolute);
    if (earlier !== undefined) {
      throw new InputError(path, "", `named by both ${earlier} and ${flag}: each needs a file of its own`);
    }
    seen.set(absolute, flag);
  }
}

/** The three clock files of `--clock-output DIR`, each written atomically (see AtomicFile). */
class ClockFileSet {
  readonly #files: readonly AtomicFile[];
  /** The directory, when this run made it: removed again if the files are discarded. */
  readonly #made: string | undefined;

  private constructor(files: readonly AtomicFile[], made: string | undefined) {
    this.#files = files;
    this.#made = made;
  }

  /** Makes `dir` if need be, and reserves each file in it; throws an Error saying why it cannot. */
  static async reserve(dir: string): Promise<ClockFileSet> {
    const existed = await Deno.stat(dir).then((info) => {
      if (!info.isDirectory) throw new Error("not a directory");
      return true;
    }, (error) => {
      if (error instanceof Deno.errors.NotFound) return false;
      throw error;
    });
    // Only DIR itself is made (as an output file's directory must exist), so a failed run removes it all.
    if (!existed) {
      await Deno.mkdir(dir).catch((error) => {
        throw error instanceof Deno.errors.NotFound
          ? new Error(`directory "${dirname(dir)}" does not exist`)
          : error;
      });
    }
    const files: AtomicFile[] = [];
    try {
      for (const name of CLOCK_FILE_NAMES) files.push(await AtomicFile.reserve(`${dir}/${name}`));
    } catch (error) {
      await new ClockFileSet(files, existed ? undefined : dir).discard();
      throw error;
    }
    return new ClockFileSet(files, existed ? undefined : dir);
  }

  async write(texts: ClockFiles): Promise<void> {
    for (const [index, name] of CLOCK_FILE_NAMES.entries()) {
      await (this.#files[index] as AtomicFile).write(texts[name]);
    }
  }

  async publish(): Promise<void> {
    for (const file of this.#files) await file.publish();
  }

  async discard(): Promise<void> {
    for (const file of this.#files) await file.discard();
    if (this.#made !== undefined) await Deno.remove(this.#made).catch(() => {});
  }
}

/** What each request got, by "customer/request" (see TimedReply.requestId). */
function outcomes(results: readonly TimedResult[]): Map<string, Outcome> {
  return new Map(
    results.flatMap(({ id, recv }) =>
      recv.map(({ requestId, success, balance }) =>
        [requestKey({ customer: id, request: requestId }), { success, balance }] as const
      )
    ),
  );
}

/** The input's id of each request's event, by "customer/request" (see TimedReply.requestId). */
function eventIds(scenario: Scenario, results: readonly TimedResult[]) {
  const ids = new Map<string, number | null>();
  for (const [entry, result] of results.entries()) {
    const events = (scenario.customers[entry] as Scenario["customers"][number]).events;
    for (const [index, reply] of result.recv.entries()) {
      ids.set(requestKey({ customer: result.id, request: reply.requestId }), events[index]?.id ?? null);
    }
  }
  return (request: RequestRef) => ids.get(requestKey(request)) ?? null;
}

/**
 * The directory the branches keep their data in: `given`, made if need be (an InputError if it cannot
 * be), as an absolute path for the children; or a fresh temporary one.
 */
async function dataDirectory(given: string | undefined): Promise<string> {
  if (given === undefined) return await Deno.makeTempDir({ prefix: "bank-data-" });
  try {
    await Deno.mkdir(given, { recursive: true });
    return await Deno.realPath(given);
  } catch (error) {
    throw new InputError(given, "", `cannot use as the data directory: ${(error as Error).message}`);
  }
}

/** Whether the run's clock events are wanted: for the clock files or the diagram. */
function recordsClocks(options: BankRunOptions): boolean {
  return options.clockOutputDir !== undefined || options.diagramPath !== undefined;
}

/** What a run's files are made of. */
interface RunRecord {
  readonly results: readonly TimedResult[];
  readonly finals: readonly HistoryFinal[];
  readonly clocks: readonly ProcessEvents[];
}

/**
 * Runs the processes; once every result is in, calls `write` with them, which writes the files (beside
 * their targets) while the children stop. Resolves when both are done, unless the run failed meanwhile (a
 * signal while the children stopped).
 */
async function runProcesses(
  scenario: Scenario,
  options: BankRunOptions,
  write: (record: RunRecord) => Promise<void>,
): Promise<void> {
  const { supervisor } = options;
  let written: Promise<void> | undefined;
  try {
    const { customer, branches } = startChildren(scenario, options);
    const ids = scenario.branches.map(({ id }) => id);
    const primary = primaryOf(ids);
    const listening = branches.map(listeningAddress);
    const plan = (id: number): BranchPlan => ({ peers: ids.filter((peer) => peer !== id) });
    const primaryChild = branches[ids.indexOf(primary)] as Child;
    const primaryPlanned = (listening[ids.indexOf(primary)] as Promise<string>).then(() =>
      primaryChild.send(JSON.stringify(plan(primary)))
    );
    // With failover every branch may lead: each is told where every other listens, once it has its plan.
    const planned = !options.failover ? [] : branches.map(async (child, index) => {
      const id = ids[index] as number;
      await (listening[index] as Promise<string>);
      if (id === primary) await primaryPlanned;
      else await child.send(JSON.stringify(plan(id)));
    });
    for (const promise of planned) promise.catch(() => {});
    // Awaited by the tasks below; if they all fail first (a branch died), the run fails for that reason.
    primaryPlanned.catch(() => {});
    // Each branch is told its plan, the customer process its address, and the primary where a backup
    // listens, as soon as that branch listens, rather than once the slowest one does: links and the
    // customer's connections come up while the last branches are still starting.
    await supervisor.within(
      Promise.all(branches.map(async (child, index) => {
        const id = ids[index] as number;
        const address = await (listening[index] as Promise<string>);
        options.log(`${child.name} (pid ${child.pid}) listening on ${address}`);
        await customer.send(JSON.stringify({ branch: id, address } satisfies CustomerAddress));
        if (options.failover) {
          await Promise.all(branches.map(async (other, otherIndex) => {
            if (otherIndex === index) return;
            await planned[otherIndex];
            await other.send(JSON.stringify({ backup: id, address } satisfies BackupAddress));
          }));
          return;
        }
        if (id === primary) return await primaryPlanned;
        await child.send(JSON.stringify(plan(id)));
        await primaryPlanned;
        await primaryChild.send(JSON.stringify({ backup: id, address } satisfies BackupAddress));
      })),
      options.startTimeoutMs,
      "every branch listening",
    );
    // The customer process is the readiness check (main never loads grpc-js): it watches each branch's
    // health until SERVING, says so, and then runs the customers.
    await supervisor.within(everyBranchServing(customer), options.startTimeoutMs, "every branch serving");
    options.log(`all ${branches.length} branches serving; customer process is pid ${customer.pid}`);
    const results = await supervisor.race(collectResults(customer, scenario.customers.length));
    const finals = options.historyPath === undefined ? [] : await supervisor.race(finalStates(customer));
    const clocks = recordsClocks(options) ? await supervisor.race(clockEvents(customer)) : [];
    options.log(`all ${results.length} customer entries done`);
    written = write({ results, finals, clocks });
    written.catch(() => {}); // Awaited below, once every child is stopped.
  } finally {
    await supervisor.stopAll(STOP_GRACE_MS);
    options.log("every process stopped");
  }
  await written;
  // A signal while the children stopped still ends the run, with nothing put in place.
  supervisor.throwIfFailed();
}

/**
 * Spawns one process per branch, the primary first, and then the customer process, which gets the input
 * at once and then waits on stdin for the branches' addresses. Branches come first because their start-up
 * is the longest path of the run; the customer process has time to spare until the first one listens.
 */
function startChildren(scenario: Scenario, options: BankRunOptions): { customer: Child; branches: Child[] } {
  const { supervisor, context } = options;
  const deadline = ["--deadline-ms", String(options.deadlineMs)];
  const startTimeout = ["--start-timeout-ms", String(options.startTimeoutMs)];
  // A forward to the primary gets half a request's deadline, so that a stalled primary is reported by
  // name (the link's "did not answer") before the customer's request itself runs out of time; entries to
  // a backup get half of that, after which the primary opens that backup's link again.
  const forwardDeadline = ["--deadline-ms", String(Math.max(1, Math.floor(options.deadlineMs / 2)))];
  const ports = scenario.branches.map(({ id }) =>
    options.portBase === undefined ? 0 : basePort(options.portBase, id)
  );
  const ids = scenario.branches.map(({ id }) => id);
  const primaryIndex = ids.indexOf(primaryOf(ids));
  // Customers acting one at a time (the default) may be answered from each branch's own replica, once it
  // has applied what the customers have seen; at once, queries must read at the primary's commit position
  // (see ReadMode in src/branch_core.ts). With async propagation every branch answers from its replica:
  // reading what a customer may miss there is the point.
  const local = !options.concurrent || options.propagation === "async";
  const reads = [
    "--reads",
    local ? "local" : "commit",
    "--propagation",
    options.propagation,
    ...(recordsClocks(options) ? ["--record-clocks"] : []),
    ...(options.failover
      ? ["--failover", "--election-timeout-ms", String(electionTimeoutMs(ids.length))]
      : []),
  ];
  // With --port-base every process may reach the branches' ports and no others (a branch listens on its
  // own and links to the others'). Free ports are not known in advance, so then any loopback port.
  const net = options.portBase === undefined ? ["127.0.0.1"] : ports.map((port) => `127.0.0.1:${port}`);
  const branches: Child[] = [];
  for (const index of [primaryIndex, ...ids.keys().filter((index) => index !== primaryIndex)]) {
    const { id, balance } = scenario.branches[index] as Scenario["branches"][number];
    const args = ["--control-stdin", "--id", String(id), "--balance", String(balance), ...reads];
    const listen = ["--listen", `127.0.0.1:${ports[index]}`];
    // Each branch may write its own directory and no other.
    const dataDir = `${options.dataDir}/branch-${id}`;
    const command = childCommand(
      "branch",
      [...args, ...listen, ...forwardDeadline, ...startTimeout, "--data-dir", dataDir],
      { context, net, write: dataDir },
    );
    branches[index] = supervisor.spawn(`branch ${id}`, command, { job: false });
  }
  const customer = supervisor.spawn(
    "customer process",
    childCommand("customer", ["--plan-stdin", ...deadline, ...startTimeout], { context, net }),
    { job: true },
  );
  // Not awaited here: a failed write is a dead customer process, which the supervisor reports.
  const input: CustomerInput = {
    input: scenarioToJson(scenario),
    finalStates: options.historyPath !== undefined,
    concurrent: options.concurrent,
    session: options.session,
    clocks: recordsClocks(options),
    // Retries that back off to a second each outlast an election (see electionTimeoutMs) several times.
    // A request that fails at its branch goes on to the next: the branch may be down for good.
    ...(options.failover ? { attempts: 20, moveOn: true } : {}),
  };
  customer.send(JSON.stringify(input)).catch(() => {});
  return { customer, branches };
}

/**
 * With failover, how long a backup of a bank of `branches` hears nothing from its primary before it stands:
 * 300 ms, and 40 ms a branch beyond that, since the primary's heartbeats to many backups, and the backups
 * themselves, share the machine's cores (with 50 branches on 2 cores, 300 ms went by without a heartbeat
 * while the run started, and the backups deposed a primary that was fine).
 */
function electionTimeoutMs(branches: number): number {
  return Math.max(300, 40 * branches);
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

/** The branches' final states, the customer process's line after its last result (for a history). */
async function finalStates(customer: Child): Promise<readonly HistoryFinal[]> {
  const line = await customer.nextLine();
  if (line === undefined) throw await customer.failure(" before it reported the branches' final states");
  return (JSON.parse(line) as CustomerFinals).finals;
}

/** Every process's clock events, the customer process's line after the final states (if asked for). */
async function clockEvents(customer: Child): Promise<readonly ProcessEvents[]> {
  const line = await customer.nextLine();
  if (line === undefined) throw await customer.failure(" before it reported the clock events");
  return (JSON.parse(line) as CustomerClocks).clocks;
}

/**
 * The customer process's results: one line per entry, in the order the entries finish, put back in
 * input order. The run needs no more from it after the last (its exit is not awaited).
 */
async function collectResults(customer: Child, expected: number): Promise<TimedResult[]> {
  const results: TimedResult[] = new Array(expected);
  for (let received = 0; received < expected; received++) {
    const line = await customer.nextLine();
    if (line === undefined) {
      throw await customer.failure(` after ${received} of ${expected} customer entries`);
    }
    const { entry, result } = JSON.parse(line) as CustomerResult;
    results[entry] = result;
  }
  return results;
}
