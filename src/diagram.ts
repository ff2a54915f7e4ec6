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

import {
  type ClockEvent,
  messageKey,
  type MessageKind,
  name,
  type ProcessEvents,
  type ProcessRef,
  requestKey,
  type RequestRef,
} from "./lamport.ts";

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
  /** The input's id of the event a request was sent for (null for none), to name it by. */
  readonly eventIdOf?: (request: RequestRef) => number | null;
}

/** The colour of each kind of message: a request and its reply alike, and so on. */
const COLOURS: Readonly<Record<MessageKind, string>> = {
  request: "#1f63b4",
  reply: "#1f63b4",
  forward: "#d9730d",
  answer: "#d9730d",
  entry: "#2a8a3e",
  ack: "#2a8a3e",
  read: "#7b4fa8",
  index: "#7b4fa8",
};
const FAILED_COLOUR = "#c62828";
/** Lanes get this much width at most (a few processes) and at least (fifty and more: the page scrolls). */
const LANE_WIDTH_MAX_PX = 150;
const LANE_WIDTH_MIN_PX = 26;
const PAGE_WIDTH_PX = 1_200;
const HEADER_HEIGHT_PX = 44;
/** Labels on arrows only while they can be read: up to this many lanes, in rows this tall. */
const LABELLED_LANES_MAX = 12;
const LABELLED_ROW_HEIGHT_PX = 24;
const ROW_HEIGHT_PX = 9;
/** Where along its arrow a label sits: nearer the send, so that arrows that cross keep theirs apart. */
const LABEL_AT = 0.4;

/** Where things go: a lane's x, a clock's y, and the sizes. */
interface Layout {
  readonly x: (process: ProcessRef) => number;
  readonly y: (clock: number) => number;
  readonly laneWidth: number;
  readonly rowHeight: number;
  readonly width: number;
  readonly height: number;
  readonly labelled: boolean;
}

/** The diagram of `processes` (each one's recorded events) as the text of an HTML page. */
export function renderDiagram(given: readonly ProcessEvents[], options: DiagramOptions): string {
  const processes = laneOrder(given);
  const layout = layoutOf(processes);
  const { x, y, width, height } = layout;
  const lanes = processes.map(({ process }) =>
    `<g class="lane" data-process="${name(process)}"><line x1="${x(process)}" y1="0" x2="${x(process)}" ` +
    `y2="${height}"/></g>`
  );
  const arrows = messages(processes).map((message) => arrow(message, layout, options));
  const dots = processes.flatMap(({ process, events }) =>
    events.map((event) =>
      `<circle class="event ${event.kind}" cx="${x(process)}" cy="${y(event.clock)}" r="${
        layout.labelled ? 4 : 2.5
      }">` +
      `<title>${escape(describe(process, event, options))}</title></circle>`
    )
  );
  const heads = [...Object.entries(COLOURS), ["failed", FAILED_COLOUR]].map(([kind, colour]) =>
    `<marker id="head-${kind}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" ` +
    `orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="${colour}"/></marker>`
  );
  const baseline = HEADER_HEIGHT_PX - 10;
  const headers = processes.map(({ process }) =>
    `<text x="${x(process)}" y="${baseline}"${
      layout.laneWidth < 60 ? ` transform="rotate(-40 ${x(process)} ${baseline})"` : ""
    }>${process.type === "customer" ? "C" : "B"}${process.id}</text>`
  );
  return page(options.title, {
    legend: legend(),
    header: `<svg class="header" width="${width}" height="${HEADER_HEIGHT_PX}">${headers.join("")}</svg>`,
    body: `<svg class="run" width="${width}" height="${height}" role="img" aria-label="space-time diagram">` +
      `<defs>${heads.join("")}</defs>${lanes.join("")}${arrows.join("")}${dots.join("")}</svg>`,
  });
}

/** Lanes side by side, and a row per distinct clock value of the run, in order. */
function layoutOf(processes: readonly ProcessEvents[]): Layout {
  const lanes = new Map(processes.map(({ process }, index) => [name(process), index]));
  const laneWidth = Math.max(
    LANE_WIDTH_MIN_PX,
    Math.min(LANE_WIDTH_MAX_PX, Math.floor(PAGE_WIDTH_PX / Math.max(1, processes.length))),
  );
  const labelled = processes.length <= LABELLED_LANES_MAX;
  const rowHeight = labelled ? LABELLED_ROW_HEIGHT_PX : ROW_HEIGHT_PX;
  const clocks = [...new Set(processes.flatMap(({ events }) => events.map((event) => event.clock)))]
    .sort((a, b) => a - b);
  const rows = new Map(clocks.map((clock, index) => [clock, index]));
  return {
    x: (process) => ((lanes.get(name(process)) ?? 0) + 0.5) * laneWidth,
    y: (clock) => ((rows.get(clock) ?? 0) + 1) * rowHeight,
    laneWidth,
    rowHeight,
    width: processes.length * laneWidth,
    height: (clocks.length + 1) * rowHeight,
    labelled,
  };
}

/** One message's arrow, with its details on hover and, in a small diagram, a label. */
function arrow({ from, to, send, receive }: Message, layout: Layout, options: DiagramOptions): string {
  const { x, y } = layout;
  const outcome = options.outcomes?.get(requestKey(send.about));
  const failed = send.message === "reply" && outcome?.success === false;
  const colour = failed ? FAILED_COLOUR : COLOURS[send.message];
  const [x1, y1] = [x(from), y(send.clock)];
  // A message never received (lost, or in flight when the run ended) is drawn as a stub.
  const [x2, y2] = receive === undefined
    ? [x1 + (x(to) - x1) / 4, y1 + layout.rowHeight / 2]
    : [x(to), y(receive.clock)];
  const detail =
    `${send.message} of ${requestName(send, options)}: ${name(from)} at clock ${send.clock} to ` +
    `${name(to)}` + (receive === undefined ? ", never received" : ` at clock ${receive.clock}`) +
    (send.message === "reply" && outcome !== undefined
      ? outcome.success ? `; success, balance ${outcome.balance}` : `; FAILED, balance ${outcome.balance}`
      : "");
  const label = layout.labelled && receive !== undefined
    ? `<text x="${x1 + (x2 - x1) * LABEL_AT}" y="${y1 + (y2 - y1) * LABEL_AT - 3}">${
      failed ? "✗ " : ""
    }${send.interface} ` +
      `${send.message} ${send.clock}→${receive.clock}</text>`
    : "";
  const classes = ["arrow", send.message, ...failed ? ["failed"] : [], ...receive ? [] : ["unreceived"]];
  return `<g class="${classes.join(" ")}"><title>${escape(detail)}</title><line x1="${x1}" y1="${y1}" ` +
    `x2="${x2}" y2="${y2}" stroke="${colour}" marker-end="url(#head-${failed ? "failed" : send.message})"/>` +
    `${label}</g>`;
}

/** "customer 2's deposit (event 3)", or "... (request 4194305)" for an event without an id. */
function requestName(event: ClockEvent, options: DiagramOptions): string {
  const id = options.eventIdOf?.(event.about) ?? null;
  return `customer ${event.about.customer}'s ${event.interface} ` +
    (id === null ? `(request ${event.about.request})` : `(event ${id})`);
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
      if (event.kind === "recv") receives.set(messageKey(event.peer, process, event.sent ?? 0), event);
    }
  }
  return processes.flatMap(({ process, events }) =>
    events.filter((event) => event.kind === "send").map((send) => ({
      from: process,
      to: send.peer,
      send,
      receive: receives.get(messageKey(process, send.peer, send.clock)),
    }))
  );
}

function describe(process: ProcessRef, event: ClockEvent, options: DiagramOptions): string {
  const direction = event.kind === "send" ? `sent ${event.message} to` : `received ${event.message} from`;
  return `${name(process)}, clock ${event.clock}: ${direction} ${name(event.peer)}, of ` +
    requestName(event, options) + (event.sent === undefined ? "" : `; sent at clock ${event.sent}`);
}

function legend(): string {
  const items: [string, string][] = [
    ["request / reply", COLOURS.request],
    ["forward / answer", COLOURS.forward],
    ["entry / ack", COLOURS.entry],
    ["read index", COLOURS.read],
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
.arrow text { font-size: 10px; text-anchor: middle; fill: #444; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
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
