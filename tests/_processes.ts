/**
 * Helpers for tests that run the real programs as processes.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { deadline } from "../src/deadline.ts";
import { readLines } from "../src/lines.ts";

/** The project's directory. */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

/** What a finished process left. */
export interface Finished {
  readonly code: number;
  readonly signal: Deno.Signal | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The arguments that run one of the project's entry files with Deno. */
export function denoArgs(entry: string, args: readonly string[]): string[] {
  return ["run", "-A", `--config=${ROOT}/deno.json`, `${ROOT}/${entry}`, ...args];
}

/** Starts `entry` with its stdout and stderr piped: stdout as lines, stderr collected whole. */
export function spawnEntry(entry: string, args: readonly string[], stdin: "piped" | "null") {
  const process = new Deno.Command(Deno.execPath(), {
    args: denoArgs(entry, args),
    cwd: ROOT,
    stdin,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  return { process, lines: readLines(process.stdout), stderr: new Response(process.stderr).text() };
}

/** Runs `entry` (main.ts, branch.ts, customer.ts or a fixture) to completion in `cwd`. */
export async function runEntry(
  entry: string,
  args: readonly string[],
  cwd: string = ROOT,
  env: Record<string, string> = {},
): Promise<Finished> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: denoArgs(entry, args),
    cwd,
    stdin: "null",
    env: { NO_COLOR: "1", ...env },
  })
    .output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    signal: output.signal,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** A branch started by hand with branch.ts (not by main). Disposing it stops it. */
export interface StartedBranch extends AsyncDisposable {
  /** The address it listens on, as it printed it. */
  readonly address: string;
  /**
   * Sends SIGTERM, waits for the exit (SIGKILL after `BRANCH_STOP_TIMEOUT_MS`) and returns what the branch
   * left. Stops it once however often it is called.
   */
  stop(): Promise<Finished>;
  /** Sends SIGKILL (no chance to clean up) and returns what the branch left. */
  kill(): Promise<Finished>;
  /** Sends `signal` (SIGSTOP or SIGCONT) and returns at once. */
  signal(signal: "SIGSTOP" | "SIGCONT"): void;
}

/** How long a branch started by {@linkcode startBranch} may take to print its address. */
export const BRANCH_START_TIMEOUT_MS = 30_000;
/** How long a branch may take to exit after SIGTERM before it is killed. */
export const BRANCH_STOP_TIMEOUT_MS = 10_000;

/** Starts branch.ts with `args` and waits for the line naming the address it listens on. */
export async function startBranch(args: readonly string[]): Promise<StartedBranch> {
  const { process, lines, stderr } = spawnEntry("branch.ts", args, "null");
  let finished: Promise<Finished> | undefined;
  const stop = () => finished ??= stopBranch(process, lines, stderr, "SIGTERM");
  const kill = () => finished ??= stopBranch(process, lines, stderr, "SIGKILL");
  try {
    const first = await deadline(
      lines.next(),
      BRANCH_START_TIMEOUT_MS,
      () => new Error(`branch.ts ${args.join(" ")} printed no address within ${BRANCH_START_TIMEOUT_MS} ms`),
    );
    const { listening } = JSON.parse(first.value ?? "{}") as { listening?: string };
    if (listening === undefined) {
      throw new Error(`branch.ts ${args.join(" ")} did not start: ${(await stop()).stderr}`);
    }
    return {
      address: listening,
      stop,
      kill,
      signal: (signal) => process.kill(signal),
      [Symbol.asyncDispose]: async () => {
        // A paused branch would not stop on SIGTERM.
        if (finished === undefined) process.kill("SIGCONT");
        await stop();
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function stopBranch(
  process: Deno.ChildProcess,
  lines: AsyncGenerator<string>,
  stderr: Promise<string>,
  signal: "SIGTERM" | "SIGKILL",
): Promise<Finished> {
  const kill = (signal: Deno.Signal) => {
    try {
      process.kill(signal);
    } catch {
      // It has exited already.
    }
  };
  kill(signal);
  const status = await deadline(process.status, BRANCH_STOP_TIMEOUT_MS, () => new Error("still running"))
    .catch(() => {
      kill("SIGKILL"); // Shows as the exit's signal, for the test to fail on.
      return process.status;
    });
  const stdout: string[] = [];
  for await (const line of lines) stdout.push(line);
  return { code: status.code, signal: status.signal, stdout: stdout.join("\n"), stderr: await stderr };
}

/** A running process whose stderr is read line by line (so the test can wait for a log line). */
export class Running {
  readonly process: Deno.ChildProcess;
  readonly stderrLines: string[] = [];
  readonly #lines: AsyncGenerator<string>;
  readonly #stdout: Promise<string>;

  constructor(entry: string, args: readonly string[], cwd: string = ROOT, env: Record<string, string> = {}) {
    this.process = new Deno.Command(Deno.execPath(), {
      args: denoArgs(entry, args),
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...env },
    }).spawn();
    this.#lines = readLines(this.process.stderr);
    this.#stdout = new Response(this.process.stdout).text();
  }

  /** Reads stderr until a line matches `pattern` (undefined if stderr ends first). */
  async waitFor(pattern: RegExp): Promise<string | undefined> {
    for (let next = await this.#lines.next(); !next.done; next = await this.#lines.next()) {
      this.stderrLines.push(next.value);
      if (pattern.test(next.value)) return next.value;
    }
    return undefined;
  }

  /** Waits for the process to exit, reading the rest of its output. */
  async finish(): Promise<Finished> {
    await this.waitFor(/(?!)/);
    const status = await this.process.status;
    return {
      code: status.code,
      signal: status.signal,
      stdout: await this.#stdout,
      stderr: this.stderrLines.join("\n"),
    };
  }
}

/** The pids that `main.ts --verbose` reports for its children. */
export function childPids(stderr: string): number[] {
  const pids = [...stderr.matchAll(/\(pid (\d+)\)|customer process is pid (\d+)/g)];
  return [...new Set(pids.map((match) => Number(match[1] ?? match[2])))];
}

/** Whether a process with this pid is running (a zombie counts as gone). */
export function isRunning(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** `count` loopback ports that were free a moment ago (for branches that must come back on the same one). */
export function freePorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = listeners.map((listener) => (listener.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return ports;
}

/** A temporary directory, removed when the returned object is disposed. */
export async function tempDir(): Promise<AsyncDisposable & { readonly path: string }> {
  const path = await Deno.makeTempDir({ prefix: "bank-test-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** An input with `branches` branches of `balance` and the given customer entries. */
export function makeInput(branches: number, balance: number, customers: readonly unknown[]): string {
  const entries = Array.from(
    { length: branches },
    (_, index) => ({ id: index + 1, type: "branch", balance }),
  );
  return JSON.stringify([...customers, ...entries]);
}
