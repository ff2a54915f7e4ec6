/**
 * `branch`: runs one branch process.
 *
 * Started by hand, it takes its peers from `--peer` flags and serves until SIGINT or SIGTERM. Started by
 * `main` (with `--control-stdin`), it prints the address it listens on, reads its plan as one JSON line
 * on standard input (the other branches' ids, and to the primary where they listen), and stops when standard
 * input closes: so a branch never outlives the `main` that
 * started it, even one that was killed.
 *
 * @module
 */

import { primaryOf } from "./branch_core.ts";
import { BranchNode, type BranchNodeOptions } from "./branch_node.ts";
import { addressFlag, addressFlags, durationFlag, integerFlag, parseFlags, UsageError } from "./cli_args.ts";
import { readLines } from "./lines.ts";

/** What `branch --help` prints. */
export const BRANCH_USAGE =
  `Usage: branch --id ID [--balance UNITS] [--listen HOST:PORT] [--peer ID=HOST:PORT ...]

Runs one branch: a gRPC server holding a replica of the account's balance.

  --id ID              this branch's id (required)
  --balance UNITS      starting balance (default 0)
  --listen HOST:PORT   address to serve on; port 0 picks a free one (default 127.0.0.1:0)
  --peer ID=HOST:PORT  another branch; repeat for each (the lowest id of all is the primary)
  --deadline-ms MS     deadline of each update forwarded to the primary (default 5000); each entry
                       the primary sends to a backup gets half of it
  --start-timeout-ms MS  how long the links between the primary and its backups may take to come up
                       (default 60000)
  --reads MODE         commit (default): answer queries at the primary's commit position, which is
                       linearizable whatever the clients do; local: from this replica once it has applied
                       the position the client names (Request.after), which is linearizable while one
                       client sends one request at a time
  --propagation P      sync (default): the primary answers an update once a majority of the branches
                       has it on disk; async: once it is on its own disk (see --propagation in main.ts)
  --record-clocks      keep every Lamport clock event of customers' requests, for Branch.events (the
                       clock runs either way; main.ts --clock-output asks for this)
  --data-dir DIR       where the branch keeps its log (created if need be; a restarted branch recovers
                       from it); default: a fresh temporary directory, removed when the branch stops
  --failover           replace a primary that stops answering by election (Raft's rules, see the
                       README's Failover section): a backup that hears nothing from it for 300 to 600 ms
                       stands, and wins with a majority's votes; the primary sends a heartbeat every 50
                       ms. Give every branch of the bank this flag, and each one every other as --peer
  --election-timeout-ms MS  with --failover: silence from the primary before a backup stands, at least MS
                       and at most twice it (default 300; main gives 40 per branch beyond 300)
  --control-stdin      (used by main) read peers from stdin, stop when stdin closes

Prints one JSON line, such as {"branch":2,"listening":"127.0.0.1:50002"}, on stdout once listening,
and serves customers (health: SERVING) once its links are up: the primary opens one to every backup.`;

const SHUTDOWN_GRACE_MS = 2_000;

/** Failover's tick: the core counts time in these (see --election-timeout-ms). */
const TICK_MS = 10;

/**
 * Failover's timing for an election timeout of `timeoutMs`: a backup stands after one to two of them
 * without a heartbeat, and the primary sends one every sixth of it (every 50 ms by default), so that a late
 * heartbeat or two (a busy event loop, a garbage collection) elect nobody.
 */
function failoverTiming(timeoutMs: number) {
  const timeoutTicks = Math.max(2, Math.ceil(timeoutMs / TICK_MS));
  const heartbeatTicks = Math.max(1, Math.floor(timeoutTicks / 6));
  return { election: { timeoutTicks, heartbeatTicks }, tickMs: TICK_MS };
}

/** Runs a branch with the given arguments until it is told to stop; returns the exit code. */
export async function runBranch(args: readonly string[]): Promise<number> {
  const { values } = parseFlags(args, {
    id: { type: "string" },
    balance: { type: "string" },
    listen: { type: "string" },
    peer: { type: "string", multiple: true },
    "deadline-ms": { type: "string" },
    "start-timeout-ms": { type: "string" },
    reads: { type: "string" },
    propagation: { type: "string" },
    "record-clocks": { type: "boolean" },
    "data-dir": { type: "string" },
    "control-stdin": { type: "boolean" },
    failover: { type: "boolean" },
    "election-timeout-ms": { type: "string" },
    help: { type: "boolean" },
  });
  if (values.help) {
    console.log(BRANCH_USAGE);
    return 0;
  }
  if (values.id === undefined) throw new UsageError("--id is required");
  const id = integerFlag("id", values.id, 0);
  const peers = addressFlags("peer", values.peer);
  const listen = addressFlag("--listen", values.listen ?? "127.0.0.1:0", 0);
  if (peers.has(id)) throw new UsageError(`--peer: branch ${id} cannot be its own peer`);
  const deadlineMs = durationFlag("deadline-ms", values["deadline-ms"], 5_000);
  const startTimeoutMs = durationFlag("start-timeout-ms", values["start-timeout-ms"], 60_000);
  const electionTimeoutMs = durationFlag("election-timeout-ms", values["election-timeout-ms"], 300);
  if (values["election-timeout-ms"] !== undefined && !values.failover) {
    throw new UsageError("--election-timeout-ms: only with --failover");
  }
  const reads = values.reads ?? "commit";
  if (reads !== "commit" && reads !== "local") {
    throw new UsageError(`--reads: expected commit or local, got "${reads}"`);
  }
  const propagation = values.propagation ?? "sync";
  if (propagation !== "sync" && propagation !== "async") {
    throw new UsageError(`--propagation: expected sync or async, got "${propagation}"`);
  }
  // Started by hand, SIGINT or SIGTERM stops the branch gracefully from here on, even while it waits for
  // its links; under main, stdin closing stops it instead (and it ignores SIGINT).
  const stopRequested = values["control-stdin"] ? undefined : signalled();
  if (values["data-dir"] === "") {
    throw new UsageError("--data-dir: expected a directory, got an empty string");
  }
  const temporary = values["data-dir"] === undefined
    ? await Deno.makeTempDir({ prefix: `bank-branch-${id}-` })
    : undefined;
  try {
    return await serve({
      id,
      balance: integerFlag("balance", values.balance, 0),
      listen,
      forwardDeadlineMs: deadlineMs,
      reads,
      propagation,
      recordClocks: values["record-clocks"] ?? false,
      dataDir: values["data-dir"] ?? temporary as string,
      ...(values.failover ? { failover: failoverTiming(electionTimeoutMs) } : {}),
    }, { peers, startTimeoutMs, stopRequested, control: values["control-stdin"] === true });
  } finally {
    if (temporary !== undefined) await Deno.remove(temporary, { recursive: true });
  }
}

/** Starts the branch, says where it listens, and serves until told to stop; returns the exit code. */
async function serve(
  options: BranchNodeOptions,
  run: {
    readonly peers: ReadonlyMap<number, string>;
    readonly startTimeoutMs: number;
    readonly stopRequested: Promise<void> | undefined;
    /** Under main: configured from stdin, stopped when it closes. */
    readonly control: boolean;
  },
): Promise<number> {
  const { id } = options;
  const { peers, startTimeoutMs, stopRequested } = run;
  const node = await BranchNode.start(options);
  const host = options.listen.replace(/:\d+$/, "");
  console.log(JSON.stringify({ branch: id, listening: `${host}:${node.port}` }));
  if (run.control) {
    await serveUnderControl(node, startTimeoutMs);
    // main closes stdin after every customer has its last reply, or to abort a failed run: either way
    // nothing in flight needs finishing, and exiting lets the OS close every connection at once. (A
    // graceful teardown of 50 branches' links took over a second of the run's wall time.)
    return 0;
  }
  try {
    // Started by hand, the peers may come up after this branch: configure() waits for them.
    const configured = node.configure([...peers.keys()], startTimeoutMs);
    if (options.failover !== undefined) {
      for (const [peer, address] of peers) node.addPeer(peer, address);
    } else if (primaryOf([id, ...peers.keys()]) === id) {
      for (const [backup, address] of peers) node.linkTo(backup, address);
    }
    configured.catch(() => {}); // Seen by the race below, unless a signal comes first.
    await Promise.race([configured, stopRequested]);
    await stopRequested;
  } finally {
    await node.stop(SHUTDOWN_GRACE_MS);
  }
  return 0;
}

/** The first line `main` sends a branch on stdin: every other branch's id. */
export interface BranchPlan {
  readonly peers: readonly number[];
}

/**
 * Each next line, to the primary only (with failover, to every branch, about every other): where one
 * backup listens, sent as soon as it does.
 */
export interface BackupAddress {
  readonly backup: number;
  /** host:port */
  readonly address: string;
}

/**
 * Configures the branch from the lines on stdin (a {@linkcode BranchPlan}, then, at the primary, a
 * {@linkcode BackupAddress} per backup), and returns once stdin closes, or throws if the links do not
 * come up.
 */
async function serveUnderControl(node: BranchNode, timeoutMs: number): Promise<void> {
  const lines = readLines(Deno.stdin.readable);
  const first = await lines.next();
  if (first.done) return;
  const configured = node.configure((JSON.parse(first.value) as BranchPlan).peers, timeoutMs);
  const addresses = (async () => {
    for await (const line of lines) {
      const { backup, address } = JSON.parse(line) as BackupAddress;
      node.linkTo(backup, address);
    }
  })();
  // Stdin closing ends the branch even while its links are still coming up (main is aborting the run).
  await Promise.race([configured.then(() => addresses), addresses]);
}

function signalled(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
      resolve();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
}
