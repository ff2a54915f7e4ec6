/**
 * Lamport logical clocks: every process (customer or branch) keeps one, ticks it for each event it records
 * (+1 for a send; max(own, carried) + 1 for a receive), and every message carries the sender's clock, so
 * that whenever one clock event happened before another, its clock is the smaller.
 *
 * A process records what it sends and receives as {@linkcode ClockEvent}s: one stream of trace records
 * that `--clock-output` (src/clock_files.ts) and {@linkcode clockViolations} read.
 *
 * @module
 */

import { assert } from "./assert.ts";
import type { Interface } from "./input.ts";

/** A process of a run. */
export interface ProcessRef {
  readonly type: "customer" | "branch";
  readonly id: number;
}

/**
 * What a message is: a customer's `request` and its branch's `reply`; a backup's `forward` of an update to
 * the primary and the primary's `answer`; an `entry` of the primary's log sent to a backup and the
 * backup's `ack`; a backup's `read` index question for a customer's query and the primary's `index`.
 */
export type MessageKind = "request" | "reply" | "forward" | "answer" | "entry" | "ack" | "read" | "index";

/** The customer request a message is part of: its customer and its id (Request.request_id). */
export interface RequestRef {
  readonly customer: number;
  readonly request: number;
}

/** A message sent or received, as the process that did it records it. */
export interface ClockEvent {
  /** The process's clock for this event. */
  readonly clock: number;
  readonly kind: "send" | "recv";
  /** Whom it was sent to, or whom it came from. */
  readonly peer: ProcessRef;
  readonly message: MessageKind;
  /** The operation of the request it is part of. */
  readonly interface: Interface;
  readonly about: RequestRef;
  /** On a receive: the sender's clock that the message carried (its send event's clock). */
  readonly sent?: number;
}

/** One process's recorded events, in the order it recorded them. */
export interface ProcessEvents {
  readonly process: ProcessRef;
  readonly events: readonly ClockEvent[];
}

/** What a recorded message is about: its kind, its request's operation and the request. */
export interface MessageAbout {
  readonly message: MessageKind;
  readonly interface: Interface;
  /** Without one (a message of no customer's request, such as a read index), nothing is recorded. */
  readonly about: RequestRef | undefined;
}

/**
 * The largest clock a message may carry to be taken: far beyond any run (a clock ticks once per message),
 * and far enough below 2^53 that a clock that takes it still counts exactly. A peer that sends more is
 * received as if it sent none: its bad clock must not stop this one.
 */
export const CARRIED_CLOCK_MAX = 2 ** 52;

/** How many events a recording clock keeps at most (see {@linkcode LamportClock.overflowed}). */
export const RECORDED_EVENTS_MAX = 50_000;

/**
 * A process's Lamport clock and, when asked to record, its events. Events are kept only for messages
 * that belong to a customer's request; the clock ticks for every message either way.
 */
export class LamportClock {
  #time = 0;
  readonly #events: ClockEvent[] | undefined;
  readonly #eventsMax: number;
  #overflowed = false;

  /**
   * A clock at 0; with `record`, it keeps the events it is told of (see {@linkcode events}), up to
   * `recordMax` (default RECORDED_EVENTS_MAX).
   */
  constructor(options: { readonly record?: boolean; readonly recordMax?: number } = {}) {
    this.#events = options.record ? [] : undefined;
    this.#eventsMax = options.recordMax ?? RECORDED_EVENTS_MAX;
  }

  /** Whether events came after the record was full, and were not kept: the record is not whole. */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  /** The clock's current value. */
  get time(): number {
    return this.#time;
  }

  /** Records sending a message to `peer`; returns the clock the message carries. */
  send(peer: ProcessRef, what: MessageAbout): number {
    this.#time++;
    assert(this.#time < 2 ** 53, "a Lamport clock ran out of exact integers");
    this.#record({ clock: this.#time, kind: "send", peer, what });
    return this.#time;
  }

  /**
   * Records receiving a message from `peer` that carried clock `sent`; returns this event's clock. A message
   * that carries none (0: an error status, or a sender that keeps no clock) is received like a local event,
   * and so is one whose clock is not a whole number up to CARRIED_CLOCK_MAX.
   */
  receive(peer: ProcessRef, carried: number, what: MessageAbout): number {
    const sent = Number.isSafeInteger(carried) && carried > 0 && carried <= CARRIED_CLOCK_MAX ? carried : 0;
    this.#time = Math.max(this.#time, sent) + 1;
    assert(this.#time < 2 ** 53, "a Lamport clock ran out of exact integers");
    this.#record({ clock: this.#time, kind: "recv", peer, what, sent });
    return this.#time;
  }

  /** The events recorded so far, in order (empty when not recording). */
  events(): readonly ClockEvent[] {
    return this.#events ?? [];
  }

  #record(
    event: { clock: number; kind: "send" | "recv"; peer: ProcessRef; what: MessageAbout; sent?: number },
  ): void {
    const { what } = event;
    if (this.#events === undefined || what.about === undefined) return;
    if (this.#events.length === this.#eventsMax) {
      this.#overflowed = true;
      return;
    }
    this.#events.push({
      clock: event.clock,
      kind: event.kind,
      peer: event.peer,
      message: what.message,
      interface: what.interface,
      about: what.about,
      ...(event.sent === undefined ? {} : { sent: event.sent }),
    });
  }
}

/**
 * Where the recorded events of a run break the clock rules, as one line each (none: they hold): each
 * process's clocks strictly increase, and every receive's clock exceeds the clock its message carried,
 * which is the clock of a matching send recorded by the sender (when the sender's events are given).
 */
export function clockViolations(processes: readonly ProcessEvents[]): string[] {
  const problems: string[] = [];
  const sends = new Map<string, ClockEvent>();
  for (const { process, events } of processes) {
    for (const event of events) {
      if (event.kind === "send") sends.set(messageKey(process, event.peer, event.clock), event);
    }
  }
  const recorded = new Set(processes.map(({ process }) => name(process)));
  for (const { process, events } of processes) {
    let previous = 0;
    for (const event of events) {
      const where = `${name(process)}, clock ${event.clock}`;
      if (event.clock <= previous) problems.push(`${where}: not above the event before it (${previous})`);
      previous = event.clock;
      if (event.kind === "send") continue;
      const sent = event.sent ?? 0;
      if (event.clock <= sent) problems.push(`${where}: a receive not above its message's clock ${sent}`);
      if (!recorded.has(name(event.peer))) continue;
      const send = sends.get(messageKey(event.peer, process, sent));
      if (send === undefined || send.message !== event.message) {
        problems.push(`${where}: no ${event.message} sent by ${name(event.peer)} at clock ${sent}`);
      }
    }
  }
  return problems;
}

/** "branch 2", "customer 1". */
export function name(process: ProcessRef): string {
  return `${process.type} ${process.id}`;
}

/**
 * What names one message: its sender, its receiver and the clock it carried (the sender's clock for the
 * send, which never repeats). A receive's `sent` and its peer give the key of the send it matches.
 */
export function messageKey(from: ProcessRef, to: ProcessRef, clock: number): string {
  return `${name(from)}>${name(to)}@${clock}`;
}

/** "customer/request": what names a customer's request in maps of them. */
export function requestKey(request: RequestRef): string {
  return `${request.customer}/${request.request}`;
}
