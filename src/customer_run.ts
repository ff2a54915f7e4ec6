/**
 * Running customer entries against branches: each entry's events in order, one request at a time, each
 * with a deadline, each reply checked before it is recorded.
 *
 * @module
 */

import type { CustomerEntry, Event } from "./input.ts";
import type { HistoryFinal } from "./history.ts";
import { LamportClock, type ProcessRef } from "./lamport.ts";
import type { EntryResult, Reply } from "./output.ts";
import { BranchClient, RpcError, type WireResponse } from "./transport.ts";
import { units } from "./wire_codec.ts";

/** A reply with what a run's history records of it (see src/history.ts). */
export interface TimedReply extends Reply {
  /** The log position the reply reflects. */
  readonly position: number;
  /** The request's id (Request.request_id): what the clock events of its messages name it by. */
  readonly requestId: number;
  /** When the request was sent and its reply came, in ms of this process's monotonic clock. */
  readonly invoke: number;
  readonly complete: number;
}

/** What one customer entry received, with the history's details of each reply. */
export interface TimedResult extends EntryResult {
  readonly recv: readonly TimedReply[];
}

/** How many times a request is sent at most, by default, and what a retry waits (doubling up to a second). */
const ATTEMPTS = 4;
const BACKOFF_MS = 50;
const BACKOFF_MAX_MS = 1_000;
/** How many request ids each run has (see runCustomers). */
const EVENTS_PER_RUN = 2 ** 22;
/** The statuses a request is retried on. */
const RETRIED: readonly string[] = ["UNAVAILABLE", "DEADLINE_EXCEEDED"];

/** How customers call branches. */
export interface CustomerRunOptions {
  /** Deadline of each request. */
  readonly deadlineMs: number;
  /** Called with each entry's result (and its place in `entries`) as soon as it is complete. */
  readonly onResult?: (result: TimedResult, index: number) => void;
  /** Run every entry at once (each entry's events still in order) rather than one after another. */
  readonly concurrent?: boolean;
  /** What the customers have seen, carried from request to request; a fresh one by default. */
  readonly session?: Session;
  /** Whether requests carry the session (Request.after); default true. Without, a branch that reads its
   * own replica answers at once, whatever the customers have seen. */
  readonly carrySession?: boolean;
  /** How many times a request is sent at most (default 4). */
  readonly attempts?: number;
  /**
   * With failover: after two attempts in a row at a branch fail (unreachable, or without a primary), the
   * request goes to the next branch (by id, round), with the same request id, so that a branch that is down
   * for good does not hold up its customers. The reply then names the branch that answered. Default false:
   * every attempt goes to the event's branch.
   */
  readonly moveOn?: boolean;
  /**
   * Each customer's Lamport clock, by customer id, made (recording its events) when the customer first
   * acts: the caller reads them once the run is done. Without it the clocks run unrecorded.
   */
  readonly clocks?: Map<number, LamportClock>;
}

/**
 * The customers' session: the highest log position any reply has reflected. Every request carries it
 * (Request.after), so that a branch that reads from its own replica answers only once it has applied
 * that far: the customers read their own updates at any branch, even one that a majority left behind.
 */
export interface Session {
  seen: number;
}

/** A customer's request failed; the message names the customer, the event and the branch. */
export class CustomerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CustomerError";
  }
}

/**
 * Resolves once every branch reports SERVING on its health service (watched, not polled); rejects with
 * CustomerError naming the first branch that does not within `timeoutMs`.
 */
export async function waitUntilServing(
  clients: ReadonlyMap<number, BranchClient>,
  timeoutMs: number,
): Promise<void> {
  await Promise.all([...clients.values()].map((client) => untilServing(client, timeoutMs)));
}

/** {@linkcode waitUntilServing} for one branch. */
export async function untilServing(client: BranchClient, timeoutMs: number): Promise<void> {
  try {
    await client.waitUntilServing(timeoutMs);
  } catch (error) {
    const reason = error instanceof RpcError && error.code === "DEADLINE_EXCEEDED"
      ? `not serving within ${timeoutMs} ms`
      : `not serving: ${error instanceof Error ? error.message : error}`;
    throw new CustomerError(`branch at ${client.address} is ${reason}`);
  }
}

/** A client for every branch (id to host:port), each already connecting, so no request waits for that. */
export function connectAll(addresses: ReadonlyMap<number, string>): Map<number, BranchClient> {
  return new Map([...addresses].map(([id, address]) => {
    const client = new BranchClient(address);
    client.connect();
    return [id, client];
  }));
}

/**
 * Runs the entries through `clients` (branch id to its client): one after another, or all at once with
 * `concurrent`; each entry's events in order either way. Results come back in the entries' order.
 */
export async function runCustomers(
  entries: readonly CustomerEntry[],
  clients: ReadonlyMap<number, BranchClient>,
  options: CustomerRunOptions,
): Promise<TimedResult[]> {
  // Each request's id is this run's own random number (30 bits), times 2^22, plus its event's place among all the
  // input's events: a retry has the same id, so a branch recognises it (Request.request_id), and the same
  // event in another run (against branches that keep their logs, with --data-dir) has a different one.
  const run = crypto.getRandomValues(new Uint32Array(1))[0] as number;
  const firstRequest: number[] = [];
  let next = ((run >>> 2) + 1) * EVENTS_PER_RUN + 1;
  for (const entry of entries) {
    firstRequest.push(next);
    next += entry.events.length;
  }
  if (entries.reduce((sum, entry) => sum + entry.events.length, 0) >= EVENTS_PER_RUN) {
    throw new CustomerError(`a run takes fewer than ${EVENTS_PER_RUN} events`);
  }
  const session = options.session ?? { seen: 0 };
  const clocks = options.clocks ?? new Map<number, LamportClock>();
  const runEntry = async (entry: CustomerEntry, index: number): Promise<TimedResult> => {
    const recv: TimedReply[] = [];
    // A customer id named by several entries is one customer, with one clock.
    const clock = clocks.get(entry.id) ?? new LamportClock({ record: options.clocks !== undefined });
    clocks.set(entry.id, clock);
    for (const [eventIndex, event] of entry.events.entries()) {
      if (!clients.has(event.branch)) throw new CustomerError(`no address for branch ${event.branch}`);
      const requestId = (firstRequest[index] as number) + eventIndex;
      const reply = await send(clients, entry.id, eventIndex, event, requestId, session, {
        ...options,
        clock,
      });
      recv.push(reply);
    }
    const result = { id: entry.id, recv };
    options.onResult?.(result, index);
    return result;
  };
  if (options.concurrent) return await Promise.all(entries.map(runEntry));
  const results: TimedResult[] = [];
  for (const [index, entry] of entries.entries()) results.push(await runEntry(entry, index));
  return results;
}

/**
 * Each branch's balance and applied log position, by a query to each (for a history's final lines), once
 * it has applied what `session` has seen. The session is sent even when the customers' requests did not
 * carry it (--no-session): final states must reflect every update answered.
 */
export function finalStates(
  clients: ReadonlyMap<number, BranchClient>,
  session: Session,
  deadlineMs: number,
): Promise<HistoryFinal[]> {
  return Promise.all([...clients.keys()].map(async (branch) => {
    const event = { id: undefined, interface: "query", amount: 0, branch } as const;
    const options = { deadlineMs, clock: new LamportClock() };
    const { balance, position } = await send(clients, 0, 0, event, 0, { ...session }, options);
    // With failover the log has positions no reply names; the branch says which (none without).
    const { noops } = await (clients.get(branch) as BranchClient).status(deadlineMs);
    return { type: "final", branch, balance, position, ...(noops.length === 0 ? {} : { noops }) } as const;
  }));
}

async function send(
  clients: ReadonlyMap<number, BranchClient>,
  customer: number,
  index: number,
  event: Event,
  requestId: number,
  session: Session,
  options: {
    readonly deadlineMs: number;
    readonly clock: LamportClock;
    readonly attempts?: number;
    readonly carrySession?: boolean;
    readonly moveOn?: boolean;
  },
): Promise<TimedReply> {
  const { deadlineMs, clock, attempts = ATTEMPTS, carrySession = true, moveOn = false } = options;
  const ids = [...clients.keys()].sort((a, b) => a - b);
  let branch = event.branch;
  let to: ProcessRef = { type: "branch", id: branch };
  const about = { customer, request: requestId };
  const where = `customer ${customer}, event ${
    event.id ?? `#${index}`
  } (${event.interface} at branch ${event.branch})`;
  const request = {
    id: event.id !== undefined && event.id <= 2 ** 31 - 1 ? event.id : 0,
    interface: event.interface,
    money: event.amount <= 2 ** 31 - 1 ? event.amount : 0,
    amount: event.amount,
    customer_id: customer,
    request_id: requestId,
    after: carrySession ? session.seen : 0,
  };
  let response: WireResponse;
  const invoke = performance.now();
  for (let attempt = 1;; attempt++) {
    try {
      // Each try is a message of its own, with the clock of its sending.
      const sent = clock.send(to, { message: "request", interface: event.interface, about });
      response = await (clients.get(branch) as BranchClient).deliver({ ...request, clock: sent }, deadlineMs);
      break;
    } catch (error) {
      // A branch that was unreachable, or did not answer in time, may have applied the update or not: the
      // same request again is applied at most once (request_id), so it is safe to retry, a few times.
      const retry = error instanceof RpcError && RETRIED.includes(error.code) && attempt < attempts;
      if (!retry) {
        throw new CustomerError(`${where}: ${error instanceof Error ? error.message : String(error)}`);
      }
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** (attempt - 1)))
      );
      if (moveOn && attempt % 2 === 0) {
        branch = ids[(ids.indexOf(branch) + 1) % ids.length] as number;
        to = { type: "branch", id: branch };
      }
    }
  }
  const complete = performance.now();
  clock.receive(to, response.clock ?? 0, { message: "reply", interface: event.interface, about });
  const balance = units(response.balance);
  const position = units(response.position);
  if (response.interface !== event.interface || balance === undefined || position === undefined) {
    throw new CustomerError(`${where}: malformed reply ${JSON.stringify(response)}`);
  }
  session.seen = Math.max(session.seen, position);
  const { interface: kind } = event;
  const { success } = response;
  return { interface: kind, branch, success, balance, position, requestId, invoke, complete };
}
