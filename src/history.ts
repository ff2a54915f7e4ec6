/**
 * A run's history: what every request asked and got, when, and where the branches ended. `main.ts
 * --history PATH` writes it as JSON lines; `main.ts check PATH` reads it back (see src/checker.ts).
 *
 * The lines, in order:
 * - `{"type": "start", "branches": [{"id": 1, "balance": 400}, ...]}`: the branches and their starting
 *   balances;
 * - one `{"type": "request", ...}` per request ({@linkcode HistoryRequest});
 * - `{"type": "final", "branch": 1, "balance": 500, "position": 2}` per branch: its balance and the last log
 *   position it had applied once every customer was done, and after a failover `"noops": [5]`: the
 *   positions that hold no customer's update.
 *
 * @module
 */

import { assert } from "./assert.ts";
import type { TimedResult } from "./customer_run.ts";
import { InputError, type Interface, INTERFACES, type Scenario } from "./input.ts";

/** One request as the customer saw it. */
export interface HistoryRequest {
  readonly type: "request";
  readonly customer: number;
  /** The customer entry's place in the input's customer entries, from 0. */
  readonly entry: number;
  /** The event's place in its entry, from 0. */
  readonly event: number;
  /** The event's id from the input, or null. */
  readonly eventId: number | null;
  readonly branch: number;
  readonly interface: Interface;
  /** Units; 0 for a query. */
  readonly amount: number;
  /** When the request was sent and when its reply came: milliseconds on one monotonic clock. */
  readonly invoke: number;
  readonly complete: number;
  readonly success: boolean;
  readonly balance: number;
  /** The log position the reply reflects (see `Response.position` in proto/bank.proto). */
  readonly position: number;
}

/** A branch's state once every customer was done. */
export interface HistoryFinal {
  readonly type: "final";
  readonly branch: number;
  readonly balance: number;
  readonly position: number;
  /**
   * The positions of its log that hold no customer's update: the entry each new primary starts its view
   * with, after a failover. None without one.
   */
  readonly noops?: readonly number[];
}

/** A whole history. */
export interface History {
  readonly branches: readonly { readonly id: number; readonly balance: number }[];
  readonly requests: readonly HistoryRequest[];
  readonly finals: readonly HistoryFinal[];
}

/** The history as the text of a history file. */
export function renderHistory(history: History): string {
  const lines = [
    JSON.stringify({ type: "start", branches: history.branches }),
    ...history.requests.map((request) => JSON.stringify(request)),
    ...history.finals.map((final) => JSON.stringify(final)),
  ];
  return `${lines.join("\n")}\n`;
}

/** Reads a history file's text; throws InputError naming `source` and the line for anything malformed. */
export function parseHistory(text: string, source: string): History {
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  let branches: History["branches"] | undefined;
  const requests: HistoryRequest[] = [];
  const finals: HistoryFinal[] = [];
  lines.forEach((line, index) => {
    const at = `line ${index + 1}`;
    const fail = (message: string): never => {
      throw new InputError(source, at, message);
    };
    let record: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        return fail("expected a JSON object");
      }
      record = parsed as Record<string, unknown>;
    } catch (error) {
      return fail(`not JSON: ${(error as Error).message}`);
    }
    const count = (field: string): number => {
      const value = record[field];
      return typeof value === "number" && Number.isSafeInteger(value) && value >= 0
        ? value
        : fail(`${field} must be a whole number, got ${JSON.stringify(value)}`);
    };
    const time = (field: string): number => {
      const value = record[field];
      return typeof value === "number" && Number.isFinite(value)
        ? value
        : fail(`${field} must be a number of milliseconds, got ${JSON.stringify(value)}`);
    };
    if (index === 0) {
      if (record["type"] !== "start" || !Array.isArray(record["branches"])) {
        return fail(`the first line must be {"type": "start", "branches": [...]}`);
      }
      branches = (record["branches"] as unknown[]).map((branch) => {
        if (typeof branch !== "object" || branch === null) {
          return fail(
            `each branch must be an object with an id and a balance, got ${JSON.stringify(branch)}`,
          );
        }
        const { id, balance } = branch as Record<string, unknown>;
        if (!Number.isSafeInteger(id) || !Number.isSafeInteger(balance)) {
          return fail(`each branch must have a whole id and balance, got ${JSON.stringify(branch)}`);
        }
        return { id: id as number, balance: balance as number };
      });
      return;
    }
    if (record["type"] === "request") {
      const kind = record["interface"];
      if (!INTERFACES.includes(kind as Interface)) return fail(`unknown interface ${JSON.stringify(kind)}`);
      const eventId = record["eventId"] === null ? null : count("eventId");
      if (typeof record["success"] !== "boolean") return fail("success must be true or false");
      const request: HistoryRequest = {
        type: "request",
        customer: count("customer"),
        entry: count("entry"),
        event: count("event"),
        eventId,
        branch: count("branch"),
        interface: kind as Interface,
        amount: count("amount"),
        invoke: time("invoke"),
        complete: time("complete"),
        success: record["success"],
        balance: count("balance"),
        position: count("position"),
      };
      if (request.complete < request.invoke) return fail("complete is before invoke");
      requests.push(request);
      return;
    }
    if (record["type"] === "final") {
      const noops = record["noops"];
      if (
        noops !== undefined &&
        (!Array.isArray(noops) || !noops.every((position) => Number.isSafeInteger(position) && position >= 1))
      ) {
        return fail(`noops must be a list of positions, got ${JSON.stringify(noops)}`);
      }
      finals.push({
        type: "final",
        branch: count("branch"),
        balance: count("balance"),
        position: count("position"),
        ...(noops === undefined ? {} : { noops: noops as number[] }),
      });
      return;
    }
    return fail(`type must be "request" or "final", got ${JSON.stringify(record["type"])}`);
  });
  if (branches === undefined) throw new InputError(source, "", "empty history");
  return { branches, requests, finals };
}

/** The run's history: each reply with the event it answered, in input order, then the final states. */
export function historyOf(
  scenario: Scenario,
  results: readonly TimedResult[],
  finals: readonly HistoryFinal[],
): History {
  const requests = results.flatMap((result, entry) =>
    result.recv.map((reply, event): HistoryRequest => {
      const asked = scenario.customers[entry]?.events[event];
      assert(
        asked !== undefined,
        `a reply for event ${event} of entry ${entry}, which the input does not have`,
      );
      return {
        type: "request",
        customer: result.id,
        entry,
        event,
        eventId: asked.id ?? null,
        // The branch that answered: the event's, unless the customer moved on from it (see moveOn).
        branch: reply.branch,
        interface: asked.interface,
        amount: asked.amount,
        invoke: reply.invoke,
        complete: reply.complete,
        success: reply.success,
        balance: reply.balance,
        position: reply.position,
      };
    })
  );
  return { branches: scenario.branches.map(({ id, balance }) => ({ id, balance })), requests, finals };
}
