/**
 * Rendering what each customer entry received, in the three output formats.
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
}

/** What one customer entry received: its id and one reply per event, in event order. */
export interface EntryResult {
  readonly id: number;
  readonly recv: readonly Reply[];
}

/** The output formats `--format` accepts. */
export type Format = "json" | "legacy" | "seed";

/** The formats, default first. */
export const FORMATS: readonly Format[] = ["json", "legacy", "seed"];

/**
 * Renders the results as the text of an output file.
 *
 * - `json`: a JSON array, one entry per line; updates report `"result": "success"` or `"fail"`, queries
 *   report `"balance"`.
 * - `legacy`: one Python-style dict per line, as graders of the course exercise read it.
 * - `seed`: one Python-style dict per line, exactly as the original Python program printed it.
 */
export function renderOutput(results: readonly EntryResult[], format: Format): string {
  switch (format) {
    case "json":
      return results.length === 0 ? "[]\n" : `[\n${results.map(jsonLine).join(",\n")}\n]\n`;
    case "legacy":
      return results.map((result) => `${pythonLine(result, legacyReply)}\n`).join("");
    case "seed":
      return results.map((result) => `${pythonLine(result, seedReply)}\n`).join("");
  }
}

function jsonLine(result: EntryResult): string {
  const recv = result.recv.map((reply) =>
    reply.interface === "query"
      ? `{"interface": "query", "balance": ${reply.balance}}`
      : `{"interface": "${reply.interface}", "result": "${reply.success ? "success" : "fail"}"}`
  );
  return `{"id": ${result.id}, "recv": [${recv.join(", ")}]}`;
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
