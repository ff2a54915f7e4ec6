/**
 * Checks a run's history from the outside, in the manner of Jepsen's bank test: no trust in the branches,
 * only what the customers saw and where the replicas ended. Pure: a history in, the first violation (or
 * none) out.
 *
 * The model: every deposit or withdrawal that succeeded has a log position, and with the positions the
 * final states name as no-ops (the entry each new primary starts its view with, which changes nothing)
 * they are 1, 2, ..., n with none twice. Replaying them in that order from each branch's starting balance
 * gives the balance after every position. A reply reflects a position p (see `Response.position`): an update that
 * succeeded is at p; a failed update was decided, and a query read, after exactly the updates 1..p.
 *
 * @module
 */

import { primaryOf } from "./branch_core.ts";
import type { History, HistoryFinal, HistoryRequest } from "./history.ts";

/** What a history that passes looked like. */
export interface CheckSummary {
  readonly requests: number;
  /** Updates that succeeded: the log's length. */
  readonly updates: number;
}

/** The first violation in `history`, as one sentence, or the summary of a history that holds. */
export function checkHistory(history: History): { ok: true; summary: CheckSummary } | {
  ok: false;
  violation: string;
} {
  const violation = firstViolation(history);
  if (violation !== undefined) return { ok: false, violation };
  const updates = history.requests.filter(isAppliedUpdate).length;
  return { ok: true, summary: { requests: history.requests.length, updates } };
}

function isAppliedUpdate(request: HistoryRequest): boolean {
  return request.interface !== "query" && request.success;
}

/** How a request is named in a violation. */
function describe(request: HistoryRequest): string {
  const event = request.eventId === null ? `#${request.event}` : `${request.eventId}`;
  return `customer ${request.customer} event ${event} (${request.interface}` +
    `${request.interface === "query" ? "" : ` ${request.amount}`} at branch ${request.branch})`;
}

function firstViolation(history: History): string | undefined {
  const { requests } = history;
  const ids = history.branches.map((branch) => branch.id);
  if (ids.length === 0) return "the history has no branches";
  if (new Set(ids).size !== ids.length) return "a branch appears twice in the start line";
  // Replicas of one account: starting apart, no outcome of an update could be right at every branch.
  const [first] = history.branches;
  const apart = history.branches.find((branch) => branch.balance !== first?.balance);
  if (first !== undefined && apart !== undefined) {
    return `branch ${apart.id} starts with balance ${apart.balance} and branch ${first.id} with ` +
      `${first.balance}: the replicas of one account start alike`;
  }

  // Every event at most once.
  const seen = new Map<string, HistoryRequest>();
  for (const request of requests) {
    const key = `${request.entry}/${request.event}`;
    const earlier = seen.get(key);
    if (earlier !== undefined) return `${describe(request)} appears twice`;
    seen.set(key, request);
    if (!ids.includes(request.branch)) return `${describe(request)} went to a branch that is not in the run`;
    if (request.interface === "query" && !request.success) {
      return `${describe(request)} is recorded as failed, but a query answered at all succeeds`;
    }
  }

  // No-ops: every final state names the same ones, each once.
  const [firstFinal] = history.finals;
  const noops = new Set(firstFinal?.noops ?? []);
  if (noops.size !== (firstFinal?.noops ?? []).length) {
    return `branch ${firstFinal?.branch} names a no-op twice`;
  }
  for (const final of history.finals) {
    const named = final.noops ?? [];
    if (named.length !== noops.size || !named.every((position) => noops.has(position))) {
      return `branches ${firstFinal?.branch} and ${final.branch} name different no-op positions`;
    }
  }

  // Positions of applied updates and no-ops: unique and dense (1..length, each once).
  const applied = requests.filter(isAppliedUpdate);
  const length = applied.length + noops.size;
  const log: (HistoryRequest | undefined)[] = new Array(length + 1);
  for (const position of noops) {
    if (position > length) {
      return `positions are not dense: no-op position ${position}, but the log has ${length} entries in all`;
    }
  }
  for (const request of applied) {
    if (request.position < 1 || request.position > length) {
      return `positions are not dense: ${describe(request)} was applied at position ${request.position}, ` +
        `but ${length} ${noops.size === 0 ? "updates were applied" : "entries were made"} in all`;
    }
    const other = log[request.position];
    if (other !== undefined) {
      return `${describe(other)} and ${describe(request)} were both applied at position ${request.position}`;
    }
    if (noops.has(request.position)) {
      return `${describe(request)} was applied at position ${request.position}, which holds a no-op`;
    }
    log[request.position] = request;
  }
  for (const request of requests) {
    if (request.position > length) {
      return `${describe(request)} reflects position ${request.position}, past the last update (${length})`;
    }
  }

  // Real time: whatever completed before a request was sent is in what that request reflects.
  const byComplete = [...requests].sort((a, b) => a.complete - b.complete);
  let done = 0;
  let latest: HistoryRequest | undefined;
  for (const request of [...requests].sort((a, b) => a.invoke - b.invoke)) {
    while (done < byComplete.length && (byComplete[done] as HistoryRequest).complete < request.invoke) {
      const finished = byComplete[done++] as HistoryRequest;
      if (latest === undefined || finished.position > latest.position) latest = finished;
    }
    if (latest === undefined) continue;
    const after = isAppliedUpdate(request)
      ? request.position > latest.position
      : request.position >= latest.position;
    if (!after) {
      return `${describe(latest)} completed before ${describe(request)} was sent, but reflects position ` +
        `${latest.position} and the later request ${request.position}`;
    }
  }

  // Replay: each branch's balance after every position, from its own starting balance.
  const delta = [0];
  for (let position = 1; position <= length; position++) {
    const update = log[position];
    const change = update === undefined ? 0 : update.interface === "deposit" ? update.amount : -update.amount;
    delta[position] = (delta[position - 1] as number) + change;
  }
  const start = new Map(history.branches.map((branch) => [branch.id, branch.balance]));
  const balanceAt = (branch: number, position: number) =>
    (start.get(branch) as number) + (delta[position] as number);
  for (const id of ids) {
    for (let position = 1; position <= length; position++) {
      const balance = balanceAt(id, position);
      const update = log[position];
      if (update !== undefined && (balance < 0 || !Number.isSafeInteger(balance))) {
        return `replaying position ${position} (${describe(update)}) takes branch ${id} to ${balance}`;
      }
    }
  }
  // An update's reply reports the primary's balance; a query's, the branch's own.
  const primary = primaryOf(ids);
  for (const request of requests) {
    const answering = request.interface === "query" ? request.branch : primary;
    const expected = balanceAt(answering, request.position);
    if (request.balance !== expected) {
      return `${describe(request)} answered balance ${request.balance}; replaying to position ` +
        `${request.position} gives ${expected}`;
    }
    if (request.interface !== "query" && !request.success) {
      const before = balanceAt(primary, request.position);
      const fails = request.interface === "withdraw"
        ? request.amount > before
        : !Number.isSafeInteger(before + request.amount);
      if (!fails) return `${describe(request)} failed, but the balance ${before} allowed it`;
    }
  }

  // Every branch ends at the replayed balance, having applied the whole log: one final state each.
  const finals = new Map<number, HistoryFinal>();
  for (const final of history.finals) {
    if (!ids.includes(final.branch)) {
      return `a final state names branch ${final.branch}, which is not in the run`;
    }
    if (finals.has(final.branch)) return `branch ${final.branch} has two final states`;
    finals.set(final.branch, final);
  }
  for (const id of ids) {
    const final = finals.get(id);
    if (final === undefined) return `branch ${id} has no final state`;
    if (final.position !== length) {
      const what = noops.size === 0 ? "updates" : "entries";
      return `branch ${id} ended at position ${final.position}, but the log has ${length} ${what}`;
    }
    if (final.balance !== balanceAt(id, length)) {
      return `branch ${id} ended with balance ${final.balance}; replaying the log gives ${
        balanceAt(id, length)
      }`;
    }
  }
  return undefined;
}
