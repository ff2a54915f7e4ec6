/**
 * A space-time diagram of a run, as one self-contained HTML page (inline SVG and CSS, no script, nothing
 * fetched): a lane per process, time flowing down by Lamport clock, and an arrow
 * for every message from its send to its receive, drawn from the events every process recorded
 * (src/lamport.ts). Hovering an event or an arrow shows its details; failed operations are marked.
 *
 * Each branch's lane is followed by the lanes of the customers with its id, the branch a customer's events
 * go to unless they name another (see src/input.ts): in the course's inputs most arrows then join
 * neighbours, even with 50 branches. Other customers come last.
 *
 * Rows are the distinct clock values of the run in order, so a receive is always drawn below its send (its
 * clock is larger) and the page is no taller than it must be.
 *
 * @module
 */

import { type ClockEvent, type MessageKind, name, type ProcessEvents, type ProcessRef } from "./lamport.ts";

/** What a customer got for a request: shown on the reply's arrow. */
export interface Outcome {
  readonly success: boolean;
  readonly balance: number;
}

/** How a diagram is drawn. */
export interface DiagramOptions {
  /** The page's title. */
  readonly title: string;
  /** What each request got, by "customer/request"; a failed one is marked on its reply. */
  readonly outcomes?: ReadonlyMap<string, Outcome>;
}

/** The colour of each kind of message: a request and its reply alike, and so on. */
const COLOURS: Readonly<Record<MessageKind, string>> = {
  request: "#1f63b4",
  reply: "#1f63b4",
  forward: "#d9730d",
  answer: "#d9730d",
  entry: "#2a8a3e",
  ack: "#2a8a3e",
  read: "#707070",
};
const FAILED_COLOUR = "#c62828";
/** Lanes get this much width at most (a few processes) and at least (fifty and more: the page scrolls). */
const LANE_WIDTH_MAX = 150;
const LANE_WIDTH_MIN = 26;
const PAGE_WIDTH = 1_200;
const HEADER_HEIGHT = 44;
/** Labels on arrows only while they can be read: up to this many lanes. */
const LABELLED_LANES_MAX = 12;

/** The diagram of `processes` (each one's recorded events) as the text of an HTML page. */
export function renderDiagram(given: readonly ProcessEvents[], options: DiagramOptions): string {
  const processes = laneOrder(given);
  const lanes = new Map(processes.map(({ process }, index) => [name(process), index]));
  const laneWidth = Math.max(
    LANE_WIDTH_MIN,
    Math.min(LANE_WIDTH_MAX, Math.floor(PAGE_WIDTH / processes.length)),
  );
  const labelled = processes.length <= LABELLED_LANES_MAX;
  const rowHeight = labelled ? 24 : 9;
  const clocks = [...new Set(processes.flatMap(({ events }) => events.map((event) => event.clock)))]
    .sort((a, b) => a - b);
  const rows = new Map(clocks.map((clock, index) => [clock, index]));
  const x = (process: ProcessRef) => ((lanes.get(name(process)) ?? 0) + 0.5) * laneWidth;
  const y = (clock: number) => ((rows.get(clock) ?? 0) + 1) * rowHeight;
  const width = processes.length * laneWidth;
  const height = (clocks.length + 1) * rowHeight;
  const outcomes = options.outcomes ?? new Map<string, Outcome>();

  const laneMarks = processes.map(({ process }) =>
    `<g class="lane" data-process="${name(process)}"><line x1="${x(process)}" y1="0" x2="${x(process)}" ` +
    `y2="${height}"/></g>`
  );
  const arrows = messages(processes).map((message) => {
    const { from, to, send, receive } = message;
    const outcome = outcomes.get(`${send.about.customer}/${send.about.request}`);
    const failed = send.message === "reply" && outcome?.success === false;
    const colour = failed ? FAILED_COLOUR : COLOURS[send.message];
    const [x1, y1] = [x(from), y(send.clock)];
    // A message never received (lost, or in flight when the run ended) is drawn as a stub.
    const [x2, y2] = receive === undefined
      ? [x1 + (x(to) - x1) / 4, y1 + rowHeight / 2]
      : [x(to), y(receive.clock)];
    const detail = `${send.message} (${send.interface}) of customer ${send.about.customer}'s request ` +
      `${send.about.request}: ${name(from)} at clock ${send.clock} to ${name(to)}` +
      (receive === undefined ? ", never received" : ` at clock ${receive.clock}`) +
      (send.message === "reply" && outcome !== undefined
        ? outcome.success ? `; success, balance ${outcome.balance}` : `; FAILED, balance ${outcome.balance}`
        : "");
    const label = labelled && receive !== undefined
      ? `<text x="${(x1 + x2) / 2}" y="${(y1 + y2) / 2 - 3}">${failed ? "✗ " : ""}${send.message} ` +
        `${send.clock}→${receive.clock}</text>`
      : "";
    const classes = `arrow ${send.message}${failed ? " failed" : ""}${
      receive === undefined ? " unreceived" : ""
    }`;
    return `<g class="${classes}"><title>${escape(detail)}</title><line x1="${x1}" y1="${y1}" x2="${x2}" ` +
      `y2="${y2}" stroke="${colour}" marker-end="url(#head-${
        failed ? "failed" : send.message
      })"/>${label}</g>`;
  });
  const dots = processes.flatMap(({ process, events }) =>
    events.map((event) =>
      `<circle class="event" cx="${x(process)}" cy="${y(event.clock)}" r="${labelled ? 4 : 2.5}">` +
      `<title>${escape(describe(process, event))}</title></circle>`
    )
  );
  const heads = [...Object.entries(COLOURS), ["failed", FAILED_COLOUR]].map(([kind, colour]) =>
    `<marker id="head-${kind}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" ` +
    `orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="${colour}"/></marker>`
  );
  const headers = processes.map(({ process }) =>
    `<text x="${x(process)}" y="${HEADER_HEIGHT - 10}"${
      laneWidth < 60 ? ` transform="rotate(-40 ${x(process)} ${HEADER_HEIGHT - 10})"` : ""
    }>${process.type === "customer" ? "C" : "B"}${process.id}</text>`
  );
  return page(options.title, {
    legend: legend(),
    header: `<svg class="header" width="${width}" height="${HEADER_HEIGHT}">${headers.join("")}</svg>`,
    body: `<svg class="run" width="${width}" height="${height}" role="img" aria-label="space-time diagram">` +
      `<defs>${heads.join("")}</defs>${laneMarks.join("")}${arrows.join("")}${dots.join("")}</svg>`,
  });
}

/** Each branch, then the customers with its id; then the other customers, each group in the order given. */
function laneOrder(processes: readonly ProcessEvents[]): ProcessEvents[] {
  const customers = processes.filter(({ process }) => process.type === "customer");
  const branches = processes.filter(({ process }) => process.type === "branch");
  const ids = new Set(branches.map(({ process }) => process.id));
  return [
    ...branches.flatMap((branch) => [
      branch,
      ...customers.filter(({ process }) => process.id === branch.process.id),
    ]),
    ...customers.filter(({ process }) => !ids.has(process.id)),
  ];
}

/** A message: its send, and its receive if the receiver recorded one. */
interface Message {
  readonly from: ProcessRef;
  readonly to: ProcessRef;
  readonly send: ClockEvent;
  readonly receive: ClockEvent | undefined;
}

/** Every recorded send, with the receive that carried its clock at its peer. */
function messages(processes: readonly ProcessEvents[]): Message[] {
  const receives = new Map<string, ClockEvent>();
  for (const { process, events } of processes) {
    for (const event of events) {
      if (event.kind === "recv") receives.set(`${name(event.peer)}>${name(process)}@${event.sent}`, event);
    }
  }
  return processes.flatMap(({ process, events }) =>
    events.filter((event) => event.kind === "send").map((send) => ({
      from: process,
      to: send.peer,
      send,
      receive: receives.get(`${name(process)}>${name(send.peer)}@${send.clock}`),
    }))
  );
}

function describe(process: ProcessRef, event: ClockEvent): string {
  const direction = event.kind === "send" ? `sent ${event.message} to` : `received ${event.message} from`;
  return `${name(process)}, clock ${event.clock}: ${direction} ${name(event.peer)} (${event.interface} of ` +
    `customer ${event.about.customer}'s request ${event.about.request})` +
    (event.sent === undefined ? "" : `, sent at clock ${event.sent}`);
}

function legend(): string {
  const items: [string, string][] = [
    ["request / reply", COLOURS.request],
    ["forward / answer", COLOURS.forward],
    ["entry / ack", COLOURS.entry],
    ["failed operation", FAILED_COLOUR],
  ];
  return items.map(([label, colour]) => `<span><i style="background:${colour}"></i>${label}</span>`).join("");
}

function page(title: string, parts: { legend: string; header: string; body: string }): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escape(title)}</title>
<style>
body { margin: 0; font: 13px system-ui, sans-serif; color: #222; background: #fff; }
h1 { font-size: 16px; margin: 10px 12px 4px; }
.legend { margin: 0 12px 8px; color: #555; }
.legend span { margin-right: 16px; white-space: nowrap; }
.legend i { display: inline-block; width: 18px; height: 3px; margin: 0 6px 3px 0; vertical-align: middle; }
.top { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ddd; z-index: 1; }
svg { display: block; margin: 0 12px; overflow: visible; }
.header text { text-anchor: middle; font-weight: 600; }
.lane line { stroke: #ccc; stroke-width: 1; }
.arrow line { stroke-width: 1.4; }
.arrow.unreceived line { stroke-dasharray: 3 2; }
.arrow text { font-size: 10px; text-anchor: middle; fill: #555; }
.arrow.failed line { stroke-width: 2.2; }
.arrow.failed text { fill: ${FAILED_COLOUR}; font-weight: 600; }
.arrow:hover line { stroke-width: 4; }
.event { fill: #222; }
.event:hover { fill: #e0a000; }
</style>
</head>
<body>
<div class="top">
<h1>${escape(title)}</h1>
<div class="legend">${parts.legend} <span>time flows down by Lamport clock; hover for details</span></div>
${parts.header}
</div>
${parts.body}
</body>
</html>
`;
}

function escape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    '"',
    "&quot;",
  );
}
