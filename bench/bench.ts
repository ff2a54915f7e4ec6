/**
 * `deno task bench`: wall time of whole runs of main.ts against a floor measured in the same run.
 *
 * The floor for a scenario with N branches is N + 1 bare Deno processes started at once, each loading
 * grpc-js and the protos, binding 127.0.0.1:0, reporting ready and exiting (bench/floor_child.ts): what
 * any multi-process gRPC design on this runtime pays before doing any work. Beside it, the same with
 * grpc-js alone (bench/bare_child.ts), since the bank's processes load no proto (src/protobuf.ts). Floor,
 * run and bare floor take turns, so all see the same machine; each is timed `--rounds` times and the
 * medians are compared. The throughput scenario (see throughputMet) alternates the bank and echo servers
 * `--rounds` times too. `--only NAME` runs some scenarios only.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { childCommand, currentContext } from "../src/launch.ts";
import { toolFlags } from "./_tool.ts";
import { BranchClient, type WireStatus } from "../src/transport.ts";
import { readLines } from "../src/lines.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

interface Scenario {
  /** What `--only` calls it. */
  readonly key: string;
  readonly name: string;
  readonly branches: number;
  /** The input file's text. */
  readonly input: string;
  /** The largest acceptable ratio of run to floor. */
  readonly target: number;
}

/** The course's graded shape: 50 branches; customers 1..50 deposit 10 and query, then withdraw 10 and query. */
function gradedInput(): string {
  const branches = Array.from(
    { length: 50 },
    (_, index) => ({ id: index + 1, type: "branch", balance: 400 }),
  );
  const round = (kind: string) =>
    Array.from({ length: 50 }, (_, index) => ({
      id: index + 1,
      type: "customer",
      events: [{ interface: kind, money: 10 }, { interface: "query" }],
    }));
  return JSON.stringify([...branches, ...round("deposit"), ...round("withdraw")]);
}

async function timed(run: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await run();
  return performance.now() - start;
}

/**
 * The command line of a branch started by main (src/launch.ts), with the same permissions (writing only
 * `write`, if given), running `script` (relative to the project) in place of branch.ts.
 */
function asBranch(
  script: string,
  args: readonly string[],
  write?: string,
): { command: string; args: string[] } {
  const context = { ...currentContext(), root: ROOT };
  const branch = childCommand("branch", args, {
    context,
    net: ["127.0.0.1"],
    ...(write === undefined ? {} : { write }),
  });
  return {
    command: branch.command,
    args: branch.args.map((arg) => arg === `${ROOT}/branch.ts` ? `${ROOT}/${script}` : arg),
  };
}

/**
 * N processes of `script` at once (bench/floor_child.ts, or bench/bare_child.ts), each with the
 * permissions a branch gets (src/launch.ts) and reading the protos, each run to its exit.
 */
async function floor(processes: number, script: string): Promise<void> {
  const { command, args: [run, ...rest] } = asBranch(script, []);
  const args = [run as string, `--allow-read=${ROOT}/proto`, ...rest];
  const children = Array.from(
    { length: processes },
    () => new Deno.Command(command, { args, stdout: "piped" }).output(),
  );
  for (const child of await Promise.all(children)) {
    if (!child.success || !new TextDecoder().decode(child.stdout).includes("ready")) {
      throw new Error(`${script} failed`);
    }
  }
}

async function bank(inputPath: string, outputPath: string, more: readonly string[] = []): Promise<void> {
  const args = [
    "run",
    "-A",
    `--config=${ROOT}/deno.json`,
    `${ROOT}/main.ts`,
    inputPath,
    "--output",
    outputPath,
    ...more,
  ];
  const result = await new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" }).output();
  if (!result.success) throw new Error(`main.ts failed: ${new TextDecoder().decode(result.stderr)}`);
}

/**
 * What recording the clocks costs: the graded shape run with `--clock-output` and `--diagram` (every
 * branch records its events, the customer process collects them, main writes four files) against the same
 * run without, alternating. No target: it is the price of the pictures.
 */
async function clocksCost(rounds: number, dir: string): Promise<void> {
  const inputPath = `${dir}/clocks.json`;
  await Deno.writeTextFile(inputPath, gradedInput());
  const recording = ["--clock-output", `${dir}/clocks`, "--diagram", `${dir}/run.html`];
  const plain: number[] = [];
  const recorded: number[] = [];
  for (let round = 0; round < rounds; round++) {
    plain.push(await timed(() => bank(inputPath, `${dir}/out.txt`)));
    recorded.push(await timed(() => bank(inputPath, `${dir}/out.txt`, recording)));
  }
  const [plainMs, recordedMs] = [median(plain), median(recorded)];
  const { size } = await Deno.stat(`${dir}/run.html`);
  console.log(
    `\nclocks: the graded shape, ${rounds} round${rounds === 1 ? "" : "s"} each, medians\n` +
      `plain                   ${plainMs.toFixed(0).padStart(6)} ms\n` +
      `--clock-output --diagram ${recordedMs.toFixed(0).padStart(5)} ms   ${
        (recordedMs / plainMs).toFixed(2)
      }x ` +
      `(diagram ${(size / 1e6).toFixed(1)} MB; no target)`,
  );
}

/** A server process of the throughput scenario, started with a branch's permissions. */
interface Server {
  readonly address: string;
  stop(): Promise<void>;
}

/**
 * Starts `script` (branch.ts or a bench script) with `args`, and waits for the address it prints. A
 * branch gets `dataDir` as its --data-dir, the one directory it may write.
 */
async function startServer(script: string, args: readonly string[], dataDir?: string): Promise<Server> {
  const { command, args: scriptArgs } = dataDir === undefined
    ? asBranch(script, args)
    : asBranch(script, [...args, "--data-dir", dataDir], dataDir);
  const child = new Deno.Command(command, {
    args: scriptArgs,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  })
    .spawn();
  const lines = readLines(child.stdout);
  const first = await lines.next();
  const address = first.done ? undefined : (JSON.parse(first.value) as { listening?: string }).listening;
  if (address === undefined) throw new Error(`${script} did not start`);
  return {
    address,
    // The echo server stops when its stdin closes, a branch started by hand on SIGTERM.
    stop: async () => {
      await child.stdin.close();
      try {
        child.kill("SIGTERM");
      } catch {
        // Exited already.
      }
      for await (const _ of lines);
      await child.status;
    },
  };
}

/** What bench/load_child.ts reports. */
interface LoadReport {
  readonly requests: number;
  readonly seconds: number;
  readonly p50: number;
  readonly p99: number;
}

/** Runs bench/load_child.ts against `addresses` with the branches' permissions; returns its report. */
async function load(addresses: readonly string[], concurrency: number, seconds: number): Promise<LoadReport> {
  const flags = [
    "--addresses",
    addresses.join(","),
    "--concurrency",
    String(concurrency),
    "--seconds",
    String(seconds),
  ];
  const { command, args } = asBranch("bench/load_child.ts", flags);
  const result = await new Deno.Command(command, { args, stdout: "piped", stderr: "inherit" })
    .output();
  if (!result.success) throw new Error("the load process failed");
  return JSON.parse(new TextDecoder().decode(result.stdout)) as LoadReport;
}

/**
 * Issue 3's throughput scenario: 5 branches (reads at the commit, as for concurrent customers) under 128
 * requests in flight, against plain unary calls to 5 echo servers at the same concurrency, in turns,
 * `rounds` times, each on freshly started processes. Prints the ratio of the rates of each round and their
 * median (target: at least 0.5); returns whether it was met.
 */
async function throughputMet(seconds: number, rounds: number, dir: string): Promise<boolean> {
  const concurrency = 128;
  const measure = (servers: readonly Server[]) =>
    load(servers.map((server) => server.address), concurrency, seconds);
  // The first (the primary, for the bank) first: backups stopping under it would be logged as links
  // breaking.
  const stop = async ([first, ...rest]: readonly Server[]) => {
    await first?.stop();
    await Promise.all(rest.map((server) => server.stop()));
  };
  // Echo and bank take turns, round after round, each on processes started for it (as a run of the bank
  // would be), so that a slow moment of the machine falls on both: the ratio of each round is of two
  // measurements next to each other, and the median of those is reported.
  const echoes: LoadReport[] = [];
  const banks: LoadReport[] = [];
  const failovers: LoadReport[] = [];
  for (let round = 0; round < rounds; round++) {
    const echoServers = await Promise.all(
      Array.from({ length: 5 }, () => startServer("bench/echo_child.ts", [])),
    );
    echoes.push(await measure(echoServers).finally(() => stop(echoServers)));
    const bankServers = await startBank(`${dir}/bank-${round}`);
    banks.push(await measure(bankServers).finally(() => stop(bankServers)));
    // The same bank with --failover: heartbeats, and reads and failed withdrawals confirmed by a round.
    const failoverServers = await startFailoverBank(`${dir}/failover-${round}`);
    failovers.push(await measure(failoverServers).finally(() => stop(failoverServers)));
  }
  // The same with one backup stopped before the load starts: the primary commits on the other four's
  // majority, and keeps trying to link to the one that is down.
  const [primary, ...backups] = await startBank(`${dir}/bank-one-down`);
  // Once the primary serves: it starts serving only once every backup it was given has linked.
  const client = new BranchClient((primary as Server).address);
  await client.waitUntilServing(30_000).finally(() => client.close());
  await backups.at(-1)?.stop();
  const downServers = [primary as Server, ...backups.slice(0, -1)];
  const oneDown = await measure(downServers).finally(() => stop(downServers));
  const rate = (report: LoadReport) => report.requests / report.seconds;
  const ratios = banks.map((bank, round) => rate(bank) / rate(echoes[round] as LoadReport));
  const ratio = median(ratios);
  const failoverRatios = failovers.map((bank, round) => rate(bank) / rate(echoes[round] as LoadReport));
  const failoverRatio = median(failoverRatios);
  // The round whose ratio is the median, for the rates and latencies printed.
  const middle = ratios.reduce(
    (best, value, round) =>
      Math.abs(value - ratio) < Math.abs((ratios[best] as number) - ratio) ? round : best,
    0,
  );
  const line = (name: string, report: LoadReport) =>
    `${name.padEnd(8)} ${rate(report).toFixed(0).padStart(7)} per s   p50 ${
      report.p50.toFixed(1).padStart(6)
    } ms` +
    `   p99 ${report.p99.toFixed(1).padStart(6)} ms`;
  console.log(
    `\nthroughput: 5 processes, ${concurrency} requests in flight, ${rounds} round${
      rounds === 1 ? "" : "s"
    } ` +
      `of ${seconds} s for each, deposits and withdrawals, durable (SQLite, WAL, full sync)`,
  );
  console.log(`ratio each round: ${ratios.map((value) => `${value.toFixed(2)}x`).join(", ")}`);
  console.log(line("echo", echoes[middle] as LoadReport));
  console.log(line("bank", banks[middle] as LoadReport));
  console.log(line("failover", failovers[middle] as LoadReport));
  console.log(`${line("1 down", oneDown)}   (the bank with one backup stopped; not part of the target)`);
  console.log(
    `ratio ${ratio.toFixed(2)}x of echo (the median round), target 0.5x ${ratio >= 0.5 ? "met" : "MISSED"}`,
  );
  console.log(
    `with --failover: ratio each round ${
      failoverRatios.map((value) => `${value.toFixed(2)}x`).join(", ")
    }; ` +
      `${failoverRatio.toFixed(2)}x (median), target 0.5x ${failoverRatio >= 0.5 ? "met" : "MISSED"}`,
  );
  return ratio >= 0.5 && failoverRatio >= 0.5;
}

/**
 * The throughput scenario's 5 branches, started by hand (backups first: the primary needs their addresses),
 * each writing its log in its own directory under `dir`, fsynced on every commit. The primary comes first.
 */
async function startBank(dir: string): Promise<Server[]> {
  const balance = ["--balance", "1000000"];
  const backups = await Promise.all(
    [2, 3, 4, 5].map((id) =>
      startServer(
        "branch.ts",
        ["--id", String(id), ...balance, "--peer", "1=127.0.0.1:1"],
        `${dir}/branch-${id}`,
      )
    ),
  );
  const peers = backups.flatMap((backup, index) => ["--peer", `${index + 2}=${backup.address}`]);
  const primary = await startServer("branch.ts", ["--id", "1", ...balance, ...peers], `${dir}/branch-1`);
  return [primary, ...backups];
}

/**
 * The throughput scenario's 5 branches with `--failover`, each given every other's address (so each is
 * started on a port picked first), branch 1 first; returns once branch 1 leads with every backup linked.
 */
async function startFailoverBank(dir: string): Promise<Server[]> {
  const listeners = Array.from({ length: 5 }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = listeners.map((listener) => (listener.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  const servers = await Promise.all([1, 2, 3, 4, 5].map((id) => {
    const peers = [1, 2, 3, 4, 5].filter((peer) => peer !== id)
      .flatMap((peer) => ["--peer", `${peer}=127.0.0.1:${ports[peer - 1]}`]);
    const args = [
      "--id",
      String(id),
      "--balance",
      "1000000",
      "--failover",
      "--listen",
      `127.0.0.1:${ports[id - 1]}`,
    ];
    return startServer("branch.ts", [...args, ...peers], `${dir}/branch-${id}`);
  }));
  const client = new BranchClient((servers[0] as Server).address);
  try {
    const linked = (status: WireStatus) =>
      status.role === "primary" && status.backups.length === 4 && status.backups.every(({ live }) => live);
    for (let polls = 0; polls < 500 && !linked(await client.status(5_000)); polls++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    client.close();
  }
  return servers;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[middle] as number
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

const USAGE =
  "usage: deno task bench [--rounds N] [--seconds S] [--only example|graded|throughput|clocks ...]";
const values = toolFlags("bench", USAGE, {
  rounds: { type: "string", default: "3" },
  seconds: { type: "string", default: "5" },
  only: { type: "string", multiple: true },
});
const rounds = Number(values.rounds);
if (!Number.isSafeInteger(rounds) || rounds < 1) {
  console.error(`bench: --rounds: expected a whole number of at least 1, got "${values.rounds}"`);
  Deno.exit(2);
}
const NAMES = ["example", "graded", "throughput", "clocks"];
const only = values.only ?? NAMES;
for (const name of only) {
  if (!NAMES.includes(name)) {
    console.error(`bench: --only: expected one of ${NAMES.join(", ")}, got "${name}"`);
    Deno.exit(2);
  }
}
const scenarios: Scenario[] = [
  {
    key: "example",
    name: "example (3 branches)",
    branches: 3,
    input: await Deno.readTextFile(`${ROOT}/Input.json`),
    target: 1.5,
  },
  { key: "graded", name: "graded (50 branches)", branches: 50, input: gradedInput(), target: 2 },
].filter(({ key }) => only.includes(key));
/** Whether any scenario missed its target: the exit status says so, for scripts. */
let missed = false;
const dir = await Deno.makeTempDir({ prefix: "bank-bench-" });
try {
  console.log(
    `${rounds} round${
      rounds === 1 ? "" : "s"
    } each, medians; Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores`,
  );
  if (scenarios.length > 0) {
    console.log("scenario               floor ms    run ms   ratio  target    bare ms  to bare");
  }
  for (const scenario of scenarios) {
    const inputPath = `${dir}/${scenario.branches}.json`;
    await Deno.writeTextFile(inputPath, scenario.input);
    const processes = scenario.branches + 1;
    // Warm Deno's module and code caches for each.
    await bank(inputPath, `${dir}/out.txt`);
    await floor(processes, "bench/floor_child.ts");
    await floor(processes, "bench/bare_child.ts");
    const floors: number[] = [];
    const bares: number[] = [];
    const runs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      floors.push(await timed(() => floor(processes, "bench/floor_child.ts")));
      runs.push(await timed(() => bank(inputPath, `${dir}/out.txt`)));
      bares.push(await timed(() => floor(processes, "bench/bare_child.ts")));
    }
    const [floorMs, runMs, bareMs] = [median(floors), median(runs), median(bares)];
    const ratio = runMs / floorMs;
    if (ratio > scenario.target) missed = true;
    console.log(
      `${scenario.name.padEnd(22)} ${floorMs.toFixed(0).padStart(8)} ${runMs.toFixed(0).padStart(9)} ` +
        `${ratio.toFixed(2).padStart(6)}x  ${scenario.target}x ${
          (ratio <= scenario.target ? "met" : "MISSED").padEnd(6)
        } ${bareMs.toFixed(0).padStart(7)} ${(runMs / bareMs).toFixed(2).padStart(7)}x`,
    );
  }
  if (only.includes("throughput") && !await throughputMet(Number(values.seconds), rounds, dir)) {
    missed = true;
  }
  if (only.includes("clocks")) await clocksCost(rounds, dir);
} finally {
  await Deno.remove(dir, { recursive: true });
}
if (missed) Deno.exit(1);
