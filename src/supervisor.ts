/**
 * Starting child processes and making sure none outlives the run: a child that exits when it should not
 * fails the run, with the tail of its stderr, and every child is stopped at the end, however it ends.
 *
 * @module
 */

import { deadline } from "./deadline.ts";
import type { ChildCommand } from "./launch.ts";
import { readLines } from "./lines.ts";

/** The run failed while running (not because of its input); the message names the process. */
export class RunFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RunFailure";
  }
}

const STDERR_TAIL_LINES = 12;

/** A child process whose stdout is read as lines and whose stderr tail is kept for error messages. */
export class Child {
  readonly name: string;
  readonly pid: number;
  /** Resolves when the process has exited and its stderr has been read to the end. */
  readonly exited: Promise<Deno.CommandStatus>;
  readonly #process: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stdout: AsyncGenerator<string>;
  readonly #tail: string[] = [];

  constructor(name: string, command: ChildCommand) {
    this.name = name;
    this.#process = new Deno.Command(command.command, {
      args: [...command.args],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.pid = this.#process.pid;
    this.#stdin = this.#process.stdin.getWriter();
    this.#stdout = readLines(this.#process.stdout);
    const drained = this.#keepTail(this.#process.stderr);
    this.exited = Promise.all([this.#process.status, drained]).then(([status]) => status);
  }

  /** The next line the child printed, or undefined once its stdout has closed. */
  async nextLine(): Promise<string | undefined> {
    const next = await this.#stdout.next();
    return next.done ? undefined : next.value;
  }

  /** Writes one line to the child's stdin. */
  async send(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(`${line}\n`));
  }

  /** Closes the child's stdin, which tells a child started by main to stop. */
  async closeInput(): Promise<void> {
    await this.#stdin.close().catch(() => {});
  }

  /** Kills the child with `signal` if it is still running. */
  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.#process.kill(signal);
    } catch {
      // Already exited: nothing to kill.
    }
  }

  /** The last lines the child wrote to stderr, indented for an error message. */
  #stderrTail(): string {
    return this.#tail.length === 0
      ? "  (nothing on stderr)"
      : this.#tail.map((line) => `  ${line}`).join("\n");
  }

  /** A failure that names the child, how it ended (with `detail` after), and its stderr tail. */
  async failure(detail: string): Promise<RunFailure> {
    const status = await this.exited;
    const how = status.signal !== null ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
    return new RunFailure(
      `${this.name} (pid ${this.pid}) ${how}${detail}; its stderr ended with:\n${this.#stderrTail()}`,
    );
  }

  async #keepTail(stderr: ReadableStream<Uint8Array>): Promise<void> {
    for await (const line of readLines(stderr)) {
      this.#tail.push(line);
      if (this.#tail.length > STDERR_TAIL_LINES) this.#tail.shift();
    }
  }
}

/** The children of one run. The first unexpected exit, or {@linkcode Supervisor.fail}, fails the run. */
export class Supervisor {
  readonly #children: Child[] = [];
  readonly #failed: Promise<never>;
  #reject: (reason: Error) => void = () => {};
  #failure: Error | undefined;
  #stopping = false;

  constructor() {
    this.#failed = new Promise<never>((_, reject) => (this.#reject = reject));
    // Nobody may be waiting when a failure comes; the run sees it at its next race().
    this.#failed.catch(() => {});
  }

  /**
   * Starts a child. Any exit before the stop fails the run, except that a `job` (a child that exits when
   * its work is done) may exit with code 0.
   */
  spawn(name: string, command: ChildCommand, options: { readonly job: boolean }): Child {
    const child = new Child(name, command);
    this.#children.push(child);
    child.exited.then(async (status) => {
      if (this.#stopping || (options.job && status.success)) return;
      this.fail(await child.failure(""));
    });
    return child;
  }

  /** Fails the run with `reason` (the first reason wins). */
  fail(reason: Error): void {
    this.#failure ??= reason;
    this.#reject(reason);
  }

  /** Throws the reason the run failed, if it has: for the steps after the last race(). */
  throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Waits for `work`, unless the run fails first. */
  race<T>(work: Promise<T>): Promise<T> {
    return Promise.race([work, this.#failed]);
  }

  /** Waits for `work` for at most `timeoutMs`, unless the run fails first. */
  within<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
    return deadline(
      this.race(work),
      timeoutMs,
      () => new RunFailure(`${what} did not happen within ${timeoutMs} ms`),
    );
  }

  /** Asks every child to stop (stdin closed), then kills those still running after `graceMs`. */
  async stopAll(graceMs: number): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#children.map((child) => child.closeInput()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([Promise.all(this.#children.map((child) => child.exited)), grace]);
    clearTimeout(timer);
    for (const child of this.#children) child.kill("SIGKILL");
    await Promise.all(this.#children.map((child) => child.exited));
  }
}
