/**
 * Rendering what each customer entry received, in the output formats.
 *
 * @module
 */

import type { Interface } from "./input.ts";

/** A branch's reply to one event, as the customer received it. */
export interface Reply {
  readonly interface: Interface;
  /** False only for a refused update (a withdrawal larger than the balance). */
  readonly success: boolean;
  /** The branch's balance after the operation, in units. */
  readonly balance: number;
  /** The branch that answered. */
  readonly branch: number;
}

/** What one customer entry received: its id and one reply per event, in event order. */
export interface EntryResult {
  readonly id: number;
  readonly recv: readonly Reply[];
}

/** The output formats `--format` accepts. */
export type Format = "json" | "legacy" | "seed" | "per-event";

/** The formats, default first. */
export const FORMATS: readonly Format[] = ["json", "legacy", "seed", "per-event"];

/**
 * Renders the results as the text of an output file.
 *
 * - `json`: a JSON array, one entry per line; updates report `"result": "success"` or `"fail"`, queries
 *   report `"balance"`.
 * - `legacy`: one Python-style dict per line, as graders of the course exercise read it.
 * - `seed`: one Python-style dict per line, exactly as the original Python program printed it.
 * - `per-event`: like `json`, but an entry per event, each reply naming its branch, as the course's
 *   client-centric consistency exercise writes it (a customer there visits several branches).
 */
export function renderOutput(results: readonly EntryResult[], format: Format): string {
  switch (format) {
    case "json":
      return jsonArray(results.map((result) => jsonLine(result, jsonReply)));
    case "per-event":
      return jsonArray(
        results.flatMap((result) =>
          result.recv.map((reply) => jsonLine({ ...result, recv: [reply] }, eventReply))
        ),
      );
    case "legacy":
      return results.map((result) => `${pythonLine(result, legacyReply)}\n`).join("");
    case "seed":
      return results.map((result) => `${pythonLine(result, seedReply)}\n`).join("");
  }
}

function jsonArray(lines: readonly string[]): string {
  return lines.length === 0 ? "[]\n" : `[\n${lines.join(",\n")}\n]\n`;
}

function jsonLine(result: EntryResult, reply: (reply: Reply) => string): string {
  return `{"id": ${result.id}, "recv": [${result.recv.map(reply).join(", ")}]}`;
}

function jsonReply(reply: Reply): string {
  return reply.interface === "query"
    ? `{"interface": "query", "balance": ${reply.balance}}`
    : `{"interface": "${reply.interface}", "result": "${reply.success ? "success" : "fail"}"}`;
}

function eventReply(reply: Reply): string {
  const at = `"interface": "${reply.interface}", "branch": ${reply.branch}`;
  return reply.interface === "query"
    ? `{${at}, "balance": ${reply.balance}}`
    : `{${at}, "result": "${reply.success ? "success" : "fail"}"}`;
}

function legacyReply(reply: Reply): string {
  const result = `'result': '${reply.success ? "success" : "fail"}'`;
  return reply.interface === "query"
    ? `{'interface': 'query', ${result}, 'money': ${reply.balance}}`
    : `{'interface': '${reply.interface}', ${result}}`;
}

function seedReply(reply: Reply): string {
  const success = `'success': ${reply.success ? "True" : "False"}`;
  return reply.interface === "query"
    ? `{'interface': 'query', ${success}, 'money': ${reply.balance}}`
    : `{'interface': '${reply.interface}', ${success}}`;
}

function pythonLine(result: EntryResult, reply: (reply: Reply) => string): string {
  return `{'id': ${result.id}, 'recv': [${result.recv.map(reply).join(", ")}]}`;
}
