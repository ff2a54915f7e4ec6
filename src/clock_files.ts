/**
 * The three files of the course's logical-clock exercise, from a run's recorded events (src/lamport.ts):
 * `customer_events.json`, `branch_events.json` and `all_events.json`. Their fields and spellings are the
 * course's, `propogate_deposit` included, since its graders match them.
 *
 * The exercise's branches send every update to every other branch. Here an update travels as a backup's
 * forward to the primary and the primary's entries to the backups: each is a branch-to-branch message
 * carrying the update, so each is a `propogate_*` event. Replies, answers, acks and read indexes are not
 * events of the exercise: they tick the clocks (a later event's clock shows them) but are not listed.
 *
 * @module
 */

import {
  type ClockEvent,
  type ProcessEvents,
  type ProcessRef,
  requestKey,
  type RequestRef,
} from "./lamport.ts";

/** One event as the course's files list it. */
interface CourseEvent {
  readonly "customer-request-id": number | null;
  readonly logical_clock: number;
  readonly interface: string;
  readonly comment: string;
}

/** The text of each of the three files. */
export interface ClockFiles {
  readonly "customer_events.json": string;
  readonly "branch_events.json": string;
  readonly "all_events.json": string;
}

/** The file names, in the order they are written. */
export const CLOCK_FILE_NAMES: readonly (keyof ClockFiles)[] = [
  "customer_events.json",
  "branch_events.json",
  "all_events.json",
];

/**
 * The three files for `processes` (customers first, then branches, each in the order given), where
 * `eventIdOf` gives the input's id of the event a request was sent for (null when the event has none).
 */
export function renderClockFiles(
  processes: readonly ProcessEvents[],
  eventIdOf: (request: RequestRef) => number | null,
): ClockFiles {
  const listed = processes.map(({ process, events }) => ({
    process,
    events: events.flatMap((event) => {
      const course = courseEvent(process, event, eventIdOf);
      return course === undefined ? [] : [{ course, about: event.about }];
    }),
  }));
  const perProcess = (type: ProcessRef["type"], byClock: boolean) =>
    lines(
      listed.filter(({ process }) => process.type === type).map(({ process, events }) => ({
        id: process.id,
        type,
        events:
          (byClock ? [...events].sort((a, b) => a.course.logical_clock - b.course.logical_clock) : events)
            .map(({ course }) => course),
      })),
    );
  return {
    "customer_events.json": perProcess("customer", false),
    "branch_events.json": perProcess("branch", true),
    "all_events.json": lines(allEvents(listed)),
  };
}

/** Every listed event, grouped by the request it belongs to (in order of first appearance), each group by clock. */
function allEvents(
  listed: readonly { process: ProcessRef; events: readonly { course: CourseEvent; about: RequestRef }[] }[],
) {
  const groups = new Map<string, { process: ProcessRef; course: CourseEvent }[]>();
  for (const { process, events } of listed) {
    for (const { course, about } of events) {
      const key = requestKey(about);
      const group = groups.get(key) ?? [];
      group.push({ process, course });
      groups.set(key, group);
    }
  }
  return [...groups.values()].flatMap((group) =>
    group
      .sort((a, b) =>
        a.course.logical_clock - b.course.logical_clock ||
        (a.process.type === b.process.type
          ? a.process.id - b.process.id
          : a.process.type === "customer"
          ? -1
          : 1)
      )
      .map(({ process, course }) => ({
        id: process.id,
        "customer-request-id": course["customer-request-id"],
        type: process.type,
        logical_clock: course.logical_clock,
        interface: course.interface,
        comment: course.comment,
      }))
  );
}

/** `event` as the course lists it, or undefined when the course has no such event. */
function courseEvent(
  process: ProcessRef,
  event: ClockEvent,
  eventIdOf: (request: RequestRef) => number | null,
): CourseEvent | undefined {
  const base = { "customer-request-id": eventIdOf(event.about), logical_clock: event.clock };
  const { peer } = event;
  if (process.type === "customer") {
    if (event.kind !== "send" || event.message !== "request") return undefined;
    return { ...base, interface: event.interface, comment: `event_sent from customer ${process.id}` };
  }
  if (event.message === "request" && event.kind === "recv") {
    return { ...base, interface: event.interface, comment: `event_recv from customer ${peer.id}` };
  }
  if (event.message !== "forward" && event.message !== "entry") return undefined;
  return {
    ...base,
    interface: `propogate_${event.interface}`,
    comment: event.kind === "send" ? `event_sent to branch ${peer.id}` : `event_recv from branch ${peer.id}`,
  };
}

/** A JSON array with one element per line, as output.txt is written. */
function lines(values: readonly unknown[]): string {
  if (values.length === 0) return "[]\n";
  return `[\n${values.map((value) => JSON.stringify(value)).join(",\n")}\n]\n`;
}
