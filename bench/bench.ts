/**
 * `deno task bench`: wall time of whole runs of main.ts against a floor measured in the same run.
 *
 * The floor for a scenario with N branches is N + 1 bare Deno processes started at once, each loading
 * grpc-js and the protos, binding 127.0.0.1:0, reporting ready and exiting (bench/floor_child.ts): what
 * any multi-process gRPC design on this runtime pays before doing any work. Floor and run alternate, so
 * both see the same machine; each is timed `--rounds` times and the medians are compared.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { childCommand, currentContext } from "../src/launch.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

interface Scenario {
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

/** N bare processes at once, with the permissions a branch gets (src/launch.ts), each run to its exit. */
async function floor(processes: number): Promise<void> {
  const context = { ...currentContext(), root: ROOT };
  const { command, args } = childCommand("branch", [], { context, net: ["127.0.0.1"] });
  // The same command line as a branch's, with the floor's script in place of branch.ts.
  const floorArgs = args.map((arg) => arg === `${ROOT}/branch.ts` ? `${ROOT}/bench/floor_child.ts` : arg);
  const children = Array.from(
    { length: processes },
    () => new Deno.Command(command, { args: floorArgs, stdout: "piped" }).output(),
  );
  for (const child of await Promise.all(children)) {
    if (!child.success || !new TextDecoder().decode(child.stdout).includes("ready")) {
      throw new Error("floor child failed");
    }
  }
}

async function bank(inputPath: string, outputPath: string): Promise<void> {
  const args = [
    "run",
    "-A",
    `--config=${ROOT}/deno.json`,
    `${ROOT}/main.ts`,
    inputPath,
    "--output",
    outputPath,
  ];
  const result = await new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" }).output();
  if (!result.success) throw new Error(`main.ts failed: ${new TextDecoder().decode(result.stderr)}`);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[middle] as number
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

const { values } = parseArgs({ args: Deno.args, options: { rounds: { type: "string", default: "3" } } });
const rounds = Number(values.rounds);
if (!Number.isSafeInteger(rounds) || rounds < 1) {
  console.error(`bench: --rounds: expected a whole number of at least 1, got "${values.rounds}"`);
  Deno.exit(2);
}
const scenarios: Scenario[] = [
  {
    name: "example (3 branches)",
    branches: 3,
    input: await Deno.readTextFile(`${ROOT}/Input.json`),
    target: 1.5,
  },
  { name: "graded (50 branches)", branches: 50, input: gradedInput(), target: 2 },
];
/** Whether any scenario missed its target: the exit status says so, for scripts. */
let missed = false;
const dir = await Deno.makeTempDir({ prefix: "bank-bench-" });
try {
  console.log(
    `${rounds} rounds each, medians; Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores`,
  );
  console.log("scenario               floor ms    run ms   ratio  target");
  for (const scenario of scenarios) {
    const inputPath = `${dir}/${scenario.branches}.json`;
    await Deno.writeTextFile(inputPath, scenario.input);
    await bank(inputPath, `${dir}/out.txt`); // Warm Deno's module and code caches for both.
    await floor(scenario.branches + 1);
    const floors: number[] = [];
    const runs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      floors.push(await timed(() => floor(scenario.branches + 1)));
      runs.push(await timed(() => bank(inputPath, `${dir}/out.txt`)));
    }
    const [floorMs, runMs] = [median(floors), median(runs)];
    const ratio = runMs / floorMs;
    if (ratio > scenario.target) missed = true;
    console.log(
      `${scenario.name.padEnd(22)} ${floorMs.toFixed(0).padStart(8)} ${runMs.toFixed(0).padStart(9)} ` +
        `${ratio.toFixed(2).padStart(6)}x  ${scenario.target}x ${
          ratio <= scenario.target ? "met" : "MISSED"
        }`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
if (missed) Deno.exit(1);
