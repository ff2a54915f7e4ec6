/**
 * A deterministic simulator, in the manner of TigerBeetle's: the branches' pure cores
 * (src/branch_core.ts), driven the way src/branch_node.ts drives them, under a simulated network, disk and
 * clock, with faults injected from a seed. Nothing here does I/O or reads a clock, so a seed replays the
 * same run exactly, and a failing seed is a reproducible bug.
 *
 * What is simulated, and how it maps to the real system:
 * - Time is ticks. Each tick runs the timers due and delivers one message chosen at random among those
 *   that may be delivered: messages on one channel (a link's direction, one customer call) arrive in the
 *   order sent, as on a stream; across channels, in any order.
 * - A link is the primary's stream to one backup. It breaks (the `linkBreak` fault, a partition, a crash
 *   of either end) with everything in flight on it, both ways; the backup's forwards and read indexes on
 *   it fail with UNAVAILABLE. The primary opens it again every few ticks, and the backup names the last
 *   position on its disk, from which the primary sends the rest from its own disk, as BranchNode does.
 * - A disk holds what was written. The primary writes what a turn persisted in one write that completes a
 *   few ticks later (then feeds `synced` and sends the entries on); a backup writes a batch of entries
 *   before its acknowledgement leaves. A crash loses what was not written yet (with `lostWrites`; without
 *   it, crashes fall between writes). A crashed branch restarts from its disk.
 * - The primary sends new entries at once only to the backups a commit or a customer waits on (sendAtOnce),
 *   holds them for the others for up to HOLD_TICKS, and sends a backup what it holds for it when the backup
 *   asks for anything, as BranchNode does.
 * - Customers act at once, each one request at a time, every request with its own key. A request whose
 *   answer does not come within a deadline, or is a refusal, is sent again with the same key; a request
 *   may be sent twice at once (`duplicate`). Each customer call is its own channel, so a retry may overtake
 *   the attempt before it. A customer's next request leaves a tick after the last one's answer.
 * - Faults happen during the first `faultTicks`; then crashed branches restart, partitions heal, and the
 *   run goes on until every customer is answered and every replica holds the whole log. The history and
 *   the final states then go through the same checker as real runs (src/checker.ts).
 *
 * Where it drives the cores differently from BranchNode, and so could miss a bug of the driver's (the
 * holding of entries is src/holding.ts, shared; the timer and the sending are each driver's own): a broken
 * link is seen by both ends at once, and a relink and its catch-up happen in one step; a paused branch is
 * never given up on (there is no deadline on entries sent); there is no splitting of long catch-ups into
 * messages, no wiped disk, and no log id (there is one bank).
 *
 * @module
 */

import {
  type Ballot,
  type BranchInput,
  type BranchOutput,
  type BranchState,
  type Election,
  type Entry,
  initialState,
  isNoOp,
  isPrimary,
  type ReadMode,
  type Recovered,
  step,
} from "./branch_core.ts";
import { checkHistory } from "./checker.ts";
import { Holding } from "./holding.ts";
import type { History, HistoryRequest } from "./history.ts";
import type { Interface } from "./input.ts";
import { Random } from "./random.ts";

/** What may go wrong, each off (0 or false) unless given. */
export interface Faults {
  /** Chance, per message delivered on a link, that the link then breaks, losing what is in flight on it. */
  readonly linkBreak: number;
  /** The most ticks a message may wait before it can be delivered, besides the order chosen at random. */
  readonly maxDelayTicks: number;
  /** Chance that a customer sends a request twice at once. */
  readonly duplicate: number;
  /** Chance, per tick, that the branches are partitioned: one cut off from the rest, or a minority split. */
  readonly partition: number;
  /** Chance, per tick, that a branch crashes; it restarts from its disk some ticks later. */
  readonly crash: number;
  /**
   * Chance, per tick, that a branch pauses (as with SIGSTOP) for PAUSE_TICKS: its links stay up, but it
   * takes no message and runs no timer until it resumes.
   */
  readonly pause: number;
  /** Whether a crash loses what the branch persisted but had not written to its disk yet. */
  readonly lostWrites: boolean;
}

/** Every fault off. */
export const NO_FAULTS: Faults = {
  linkBreak: 0,
  maxDelayTicks: 0,
  duplicate: 0,
  partition: 0,
  crash: 0,
  pause: 0,
  lostWrites: false,
};

/** Every fault on, at rates that hit a run of a few thousand ticks several times each. */
export const ALL_FAULTS: Faults = {
  linkBreak: 0.01,
  maxDelayTicks: 5,
  duplicate: 0.1,
  partition: 0.002,
  crash: 0.002,
  pause: 0.002,
  lostWrites: true,
};

/** One simulated run. */
export interface SimulationOptions {
  readonly seed: number;
  /** How many branches: ids 1..branches, starting balance 100 each. */
  readonly branches: number;
  readonly customers: number;
  /** Requests per customer: queries, deposits and withdrawals at random branches. */
  readonly requests: number;
  readonly faults?: Partial<Faults>;
  /**
   * How branches answer queries (default "commit"). With "local", each query names the highest position
   * its customer has been answered with, which is linearizable only while one customer acts at a time.
   */
  readonly reads?: ReadMode;
  /** Faults happen before this tick (default 3,000). */
  readonly faultTicks?: number;
  /**
   * A deliberately broken driver, to show that the simulator finds what it is for. `shipBeforeWrite`: the
   * primary sends entries to its backups before its own write of them completes.
   */
  readonly bug?: "shipBeforeWrite";
  /**
   * Whether a primary that stops answering is replaced by election (see the core's Election), with time
   * for the cores in ticks: ELECTION. Default false: branch 1 is the primary for good.
   */
  readonly failover?: boolean;
}

/**
 * What a run counts of its faults: `lostEntries` are entries persisted but lost in a crash before their
 * write.
 */
export const INJECTED = [
  "linkBreaks",
  "partitions",
  "crashes",
  "pauses",
  "duplicates",
  "lostEntries",
] as const;

/** How many of each fault a run (or several) injected. */
export type Injected = Record<(typeof INJECTED)[number], number>;

/** Counts of none of them, to add runs' counts to. */
export function noneInjected(): Injected {
  return Object.fromEntries(INJECTED.map((fault) => [fault, 0])) as Injected;
}

/** What a run did, and whether its history holds. */
export interface SimulationResult {
  readonly seed: number;
  readonly ticks: number;
  readonly history: History;
  /** How many of each fault were injected. */
  readonly injected: Injected;
  /** How many times a branch won an election. */
  readonly elections: number;
  /** The first violation the checker found, or why the run did not finish; undefined if none. */
  readonly violation: string | undefined;
}

const BALANCE = 100;
const DEFAULT_FAULT_TICKS = 3_000;
/** Past this, a run that has not finished is a liveness failure. */
const MAX_TICKS = 200_000;
/** Ticks a customer waits for an answer before it sends the request again. */
const DEADLINE_TICKS = 150;
/** Ticks between a refusal and the customer's next attempt. */
const RETRY_TICKS = 10;
/** Ticks between the primary's attempts to open a broken link. */
const RELINK_TICKS = 20;
/** Ticks the primary may hold entries for a backup outside the quorum (BranchNode: HOLD_MAX_MS). */
const HOLD_TICKS = 20;
/** Ticks a paused branch stays paused: longer than HOLD_TICKS, so a paused backup of the quorum is left behind. */
const PAUSE_TICKS = 60;
/** Ticks a crashed branch stays down; a partition lasts. */
const DOWN_TICKS = 200;
/**
 * Failover's timing: a tick delivers one message, so a heartbeat waits behind the others in flight; the
 * timeout leaves room for that and still elects a new primary well within DOWN_TICKS.
 */
const ELECTION: Election = { timeoutTicks: 60, heartbeatTicks: 10 };

/** Runs one simulation. */
export function simulate(options: SimulationOptions): SimulationResult {
  return new Simulation(options).run();
}

/** A link from the primary that opened it to one backup, in one generation: a break drops what was sent on it. */
interface LinkRef {
  readonly primary: number;
  readonly backup: number;
  readonly generation: number;
}

interface Message {
  readonly channel: string;
  /** The link the message travels on, if any. */
  readonly link?: LinkRef;
  /** Both ends, for dropping what a crashed branch had in flight. */
  readonly ends: readonly number[];
  /** The branch it is for, if it is for one: nothing is delivered to a paused branch. */
  readonly to?: number;
  /** The first tick it may be delivered at. */
  readonly at: number;
  readonly deliver: () => void;
}

type Answer = (output: BranchOutput) => void;
type Persist = Extract<BranchOutput, { type: "persist" }>;

/** A branch: its core, its disk, and what its driver keeps. */
interface Branch {
  readonly id: number;
  /** Undefined while crashed. */
  state: BranchState | undefined;
  readonly disk: {
    entries: Recovered["entries"][number][];
    failures: Recovered["failures"][number][];
    ballot: Ballot | undefined;
  };
  /** Persisted by the core, not written yet, in order. */
  unwritten: Persist[];
  /** The write under way, if any: a crash cancels it, and a restarted branch's next write is another. */
  writing: object | undefined;
  /** Inbound calls, by the request id the core knows them by. */
  readonly calls: Map<number, Answer>;
  nextRequestId: number;
  /** While it is primary: what it holds for backups outside the quorum; lost when it crashes. */
  holding: Holding;
  /** Whether its timer that sends every held entry is set. */
  holdTimer: boolean;
  /** How many times it became primary, or stopped being it: its links and timers of an earlier time stop. */
  tenure: number;
}

/** A primary's link with one backup. */
interface Link {
  live: boolean;
  generation: number;
  /** At the backup: its forwards and read indexes on this generation, to refuse if the link breaks. */
  readonly outstanding: Map<number, "forward" | "index">;
}

/** A customer's request. */
interface Script {
  readonly branch: number;
  readonly interface: Interface;
  readonly amount: number;
}

/** A request of a simulated customer, and the session it carries (the highest position it was answered). */
interface CustomerRequest {
  readonly customer: number;
  /** Its place among the customer's requests. */
  readonly index: number;
  readonly script: Script;
  readonly session: { seen: number };
}

class Simulation {
  readonly #options: SimulationOptions;
  readonly #faults: Faults;
  readonly #faultTicks: number;
  readonly #election: Election | undefined;
  readonly #random: Random;
  readonly #ids: number[];
  readonly #branches = new Map<number, Branch>();
  /** By "primary>backup". */
  readonly #links = new Map<string, Link>();
  #messages: Message[] = [];
  /** What happens later; a timer of a branch (`owner`) waits while the branch is paused. */
  readonly #timers: { at: number; run: () => void; owner?: number }[] = [];
  /** Paused branches, with the tick each resumes at. */
  readonly #paused = new Map<number, number>();
  #tick = 0;
  /** Pairs of branches that cannot reach each other, as "a-b" with a < b. */
  #cut = new Set<string>();
  readonly #requests: HistoryRequest[] = [];
  #customersLeft: number;
  readonly #injected = noneInjected();
  /** How many times a branch became primary of a view after the first. */
  #elections = 0;

  constructor(options: SimulationOptions) {
    this.#options = options;
    this.#faults = { ...NO_FAULTS, ...options.faults };
    this.#faultTicks = options.faultTicks ?? DEFAULT_FAULT_TICKS;
    this.#election = options.failover ? ELECTION : undefined;
    this.#random = new Random(options.seed);
    this.#ids = Array.from({ length: options.branches }, (_, index) => index + 1);
    for (const id of this.#ids) {
      this.#branches.set(id, {
        id,
        state: undefined,
        disk: { entries: [], failures: [], ballot: undefined },
        unwritten: [],
        writing: undefined,
        calls: new Map(),
        nextRequestId: 1,
        holding: new Holding(),
        holdTimer: false,
        tenure: 0,
      });
    }
    for (const branch of this.#branches.values()) this.#start(branch);
    this.#customersLeft = options.customers;
    for (let customer = 1; customer <= options.customers; customer++) this.#customer(customer);
  }

  run(): SimulationResult {
    let violation: string | undefined;
    try {
      while (this.#customersLeft > 0 || !this.#settled()) {
        if (this.#tick >= MAX_TICKS) {
          violation = `not finished after ${MAX_TICKS} ticks (${this.#customersLeft} customers waiting)`;
          break;
        }
        this.#tick++;
        if (this.#tick < this.#faultTicks) this.#injectFaults();
        else if (this.#tick === this.#faultTicks) this.#heal();
        for (const [id, resumes] of this.#paused) if (resumes <= this.#tick) this.#paused.delete(id);
        for (const timer of this.#timers.filter(({ at }) => at <= this.#tick)) {
          this.#timers.splice(this.#timers.indexOf(timer), 1);
          const resumes = timer.owner === undefined ? undefined : this.#paused.get(timer.owner);
          if (resumes === undefined) timer.run();
          else this.#timers.push({ ...timer, at: resumes });
        }
        if (this.#election !== undefined) {
          for (const branch of this.#branches.values()) {
            if (!this.#paused.has(branch.id)) this.#feed(branch, { type: "tick" });
          }
        }
        this.#deliverOne();
      }
    } catch (error) {
      // A core's own check failed (a log that does not add up, a key decided twice): a violation too.
      violation = `at tick ${this.#tick}: ${(error as Error).message}`;
    }
    const primary = [...this.#branches.values()].find(({ state }) => state !== undefined && isPrimary(state));
    const noops = (primary?.disk.entries ?? []).filter(({ entry }) => isNoOp(entry))
      .map(({ entry }) => entry.position);
    const history: History = {
      branches: this.#ids.map((id) => ({ id, balance: BALANCE })),
      requests: this.#requests,
      finals: [...this.#branches.values()].map(({ id, state }) => ({
        type: "final" as const,
        branch: id,
        balance: state?.balance ?? -1,
        position: state?.position ?? -1,
        ...(noops.length === 0 ? {} : { noops }),
      })),
    };
    if (violation === undefined) {
      const checked = checkHistory(history);
      if (!checked.ok) violation = checked.violation;
    }
    return {
      seed: this.#options.seed,
      ticks: this.#tick,
      history,
      injected: this.#injected,
      elections: this.#elections,
      violation,
    };
  }

  // ---- The loop -------------------------------------------------------------------------------------

  /**
   * Whether nothing is left to happen: every message delivered, every write done, one primary, and its
   * every link live with nothing held.
   */
  #settled(): boolean {
    if (this.#messages.length > 0 || this.#paused.size > 0) return false;
    const branches = [...this.#branches.values()];
    if (branches.some((branch) => branch.state === undefined || branch.writing)) return false;
    const primaries = branches.filter((branch) => isPrimary(branch.state as BranchState));
    if (primaries.length !== 1) return false;
    const [primary] = primaries as [Branch];
    return !primary.holding.holding &&
      this.#ids.every((id) => id === primary.id || this.#links.get(`${primary.id}>${id}`)?.live);
  }

  #deliverOne(): void {
    const heads = this.#messages.filter((message, index) =>
      message.at <= this.#tick &&
      (message.to === undefined || !this.#paused.has(message.to)) &&
      this.#messages.findIndex((other) => other.channel === message.channel) === index
    );
    if (heads.length === 0) return;
    const message = this.#random.pick(heads);
    this.#messages.splice(this.#messages.indexOf(message), 1);
    message.deliver();
    if (message.link !== undefined && this.#chance(this.#faults.linkBreak)) {
      this.#injected.linkBreaks++;
      this.#break(message.link.primary, message.link.backup);
    }
  }

  #send(message: Omit<Message, "at">): void {
    this.#messages.push({ ...message, at: this.#tick + this.#random.below(this.#faults.maxDelayTicks + 1) });
  }

  #after(ticks: number, run: () => void, owner?: number): void {
    this.#timers.push({ at: this.#tick + ticks, run, ...(owner === undefined ? {} : { owner }) });
  }

  #chance(probability: number): boolean {
    return probability > 0 && this.#tick < this.#faultTicks && this.#random.next() < probability;
  }

  // ---- Faults ---------------------------------------------------------------------------------------

  #injectFaults(): void {
    if (this.#chance(this.#faults.crash)) {
      const up = this.#ids.filter((id) => this.#branches.get(id)?.state !== undefined);
      if (up.length > 0) {
        this.#injected.crashes++;
        const victim = this.#branches.get(this.#random.pick(up)) as Branch;
        this.#crash(victim);
        this.#after(DOWN_TICKS, () => this.#restart(victim));
      }
    }
    if (this.#chance(this.#faults.pause)) {
      const running = this.#ids.filter((id) =>
        this.#branches.get(id)?.state !== undefined && !this.#paused.has(id)
      );
      if (running.length > 0) {
        this.#injected.pauses++;
        this.#paused.set(this.#random.pick(running), this.#tick + PAUSE_TICKS);
      }
    }
    if (this.#cut.size === 0 && this.#chance(this.#faults.partition)) {
      this.#injected.partitions++;
      // One branch cut off, or a minority of them split off from the rest.
      const minority = Math.max(1, Math.floor((this.#ids.length - 1) / 2));
      const side = shuffled(this.#ids, this.#random).slice(0, 1 + this.#random.below(minority));
      for (const a of side) {
        for (const b of this.#ids.filter((id) => !side.includes(id))) this.#cut.add(pair(a, b));
      }
      for (const key of this.#links.keys()) {
        const [primary, backup] = key.split(">").map(Number) as [number, number];
        if (this.#cut.has(pair(primary, backup))) this.#break(primary, backup);
      }
      this.#after(DOWN_TICKS, () => (this.#cut = new Set()));
    }
  }

  /** Faults end: every crashed branch restarts, and partitions heal. */
  #heal(): void {
    this.#cut = new Set();
    this.#paused.clear();
    for (const branch of this.#branches.values()) {
      if (branch.state === undefined) this.#restart(branch);
    }
  }

  #crash(branch: Branch): void {
    if (this.#faults.lostWrites) {
      this.#injected.lostEntries += branch.unwritten.filter((persist) => persist.entry !== undefined).length;
      branch.unwritten = [];
    } else {
      this.#applyToDisk(branch);
    }
    branch.writing = undefined;
    branch.state = undefined;
    branch.calls.clear();
    this.#paused.delete(branch.id);
    // Its connections close: what it had in flight is lost, and its links break.
    this.#messages = this.#messages.filter((message) => !message.ends.includes(branch.id));
    this.#closeLinks(branch);
    for (const id of this.#ids) this.#break(id, branch.id);
  }

  #restart(branch: Branch): void {
    if (branch.state !== undefined) return;
    this.#start(branch);
  }

  #start(branch: Branch): void {
    const peers = this.#ids.filter((id) => id !== branch.id);
    const { entries, failures, ballot } = branch.disk;
    branch.state = initialState(branch.id, BALANCE, {
      peers,
      recovered: { entries: [...entries], failures: [...failures], ballot },
      reads: this.#options.reads ?? "commit",
      election: this.#election,
    });
    // What its disk held is its own: a primary without backups has it committed at once.
    this.#feed(branch, { type: "synced" });
    if (isPrimary(branch.state)) this.#openLinks(branch);
  }

  // ---- Links ----------------------------------------------------------------------------------------

  #link(primary: number, backup: number): Link {
    const key = `${primary}>${backup}`;
    let link = this.#links.get(key);
    if (link === undefined) {
      link = { live: false, generation: 0, outstanding: new Map() };
      this.#links.set(key, link);
    }
    return link;
  }

  /** `branch` became primary: it opens a link to every other branch. */
  #openLinks(branch: Branch): void {
    branch.tenure++;
    branch.holding = new Holding();
    branch.holdTimer = false;
    for (const peer of (branch.state as BranchState).peers) this.#relink(branch.id, peer, branch.tenure, 1);
  }

  /** `branch` is no longer primary (or crashed): its links break, and are not opened again. */
  #closeLinks(branch: Branch): void {
    branch.tenure++;
    branch.holding = new Holding();
    for (const id of this.#ids) this.#break(branch.id, id);
  }

  /** Breaks a primary's link with `backup`: what is in flight on it is lost, and the backup's requests on it fail. */
  #break(primary: number, backup: number): void {
    const link = this.#links.get(`${primary}>${backup}`);
    if (link === undefined || (!link.live && link.outstanding.size === 0)) return;
    const wasLive = link.live;
    link.live = false;
    link.generation++;
    const opener = this.#branches.get(primary) as Branch;
    opener.holding.forget(backup); // The next link's catch-up starts from the backup's disk.
    this.#messages = this.#messages.filter((message) =>
      message.link?.primary !== primary || message.link.backup !== backup
    );
    const branch = this.#branches.get(backup) as Branch;
    const outstanding = [...link.outstanding];
    link.outstanding.clear();
    for (const [requestId, kind] of outstanding) this.#feed(branch, answerOf(kind, requestId, UNLINKED));
    if (wasLive) this.#relink(primary, backup, opener.tenure);
  }

  /**
   * The primary opens its link with `backup` again in a while (`ticks`), and keeps trying while it cannot,
   * as long as it is still primary (`tenure`).
   */
  #relink(from: number, backup: number, tenure: number, ticks = RELINK_TICKS): void {
    this.#after(ticks, () => {
      const primary = this.#branches.get(from) as Branch;
      const link = this.#link(from, backup);
      const state = primary.state;
      if (state === undefined || !isPrimary(state) || primary.tenure !== tenure || link.live) return;
      const other = this.#branches.get(backup) as Branch;
      // A paused backup cannot accept the link (the real one waits until it can, or gives up).
      const reachable = other.state !== undefined && !this.#paused.has(backup) &&
        !this.#cut.has(pair(from, backup));
      if (!reachable) return this.#relink(from, backup, tenure);
      // The backup names the end of its disk and what it knows is committed (or refuses a primary of an
      // earlier view than its own); the primary works out where their logs agree, and sends it every later
      // entry from its own disk.
      const answer = this.#answer(
        other,
        (requestId) => ({ type: "link", requestId, from, view: state.view }),
      );
      if (answer?.type !== "accept") {
        const view = answer?.type === "refuse" ? answer.refusal.view : undefined;
        if (view !== undefined) this.#feed(primary, { type: "view", view });
        return this.#relink(from, backup, tenure);
      }
      link.live = true;
      const { last, commit } = answer;
      this.#feed(primary, { type: "linked", backup, position: last.position, view: last.view, commit });
      const matched = primary.state?.matched.get(backup) ?? 0;
      const missing = primary.disk.entries.slice(matched).map(({ entry }) => entry);
      if (missing.length > 0) this.#sendEntries(from, backup, missing);
    }, from);
  }

  /** The primary sends `entries` to `backup` on their link; the acknowledgement comes back as `replicated`. */
  #sendEntries(from: number, backup: number, entries: readonly Entry[]): void {
    const link = this.#link(from, backup);
    const on = { primary: from, backup, generation: link.generation };
    const view = (this.#branches.get(from)?.state as BranchState).view;
    this.#sendOnLink(on, "backup", () => {
      const branch = this.#branches.get(backup) as Branch;
      const outputs: BranchOutput[] = [];
      for (const entry of entries) {
        const requestId = branch.nextRequestId++;
        branch.calls.set(requestId, (output) => outputs.push(output));
        this.#feed(branch, { type: "entry", requestId, entry, from, view });
        if (outputs.at(-1)?.type === "refuse") break;
      }
      // A backup writes a batch before its answer leaves.
      this.#write(branch);
      const answer = outputs.find((output) => output.type === "refuse") ?? outputs.at(-1);
      this.#sendOnLink(on, "primary", () => {
        const primary = this.#branches.get(from) as Branch;
        if (answer?.type === "ack") {
          this.#feed(primary, { type: "replicated", backup, position: answer.position });
        } else {
          this.#refused(primary, backup, answer);
        }
      });
    });
  }

  /**
   * At a primary: `backup` refused what it sent on their link. As BranchNode does, the link breaks (and
   * is opened again); a refusal naming a later view first makes the primary enter it.
   */
  #refused(primary: Branch, backup: number, answer: BranchOutput | undefined): void {
    const view = answer?.type === "refuse" ? answer.refusal.view : undefined;
    if (view !== undefined) this.#feed(primary, { type: "view", view });
    this.#break(primary.id, backup);
  }

  /** At a primary: sends a heartbeat on every live link; each answer comes back as `confirmed`. */
  #heartbeat(primary: Branch, beat: Extract<BranchOutput, { type: "heartbeat" }>): void {
    for (const backup of (primary.state as BranchState).peers) {
      const link = this.#links.get(`${primary.id}>${backup}`);
      if (link === undefined || !link.live) continue;
      const on = { primary: primary.id, backup, generation: link.generation };
      this.#sendOnLink(on, "backup", () => {
        const branch = this.#branches.get(backup) as Branch;
        const { view, last, commit, round } = beat;
        const answer = this.#answer(
          branch,
          (requestId) => ({ type: "heartbeat", requestId, from: primary.id, view, last, commit, round }),
        );
        this.#sendOnLink(on, "primary", () => {
          if (answer?.type === "ack") this.#feed(primary, { type: "confirmed", backup, round });
          else this.#refused(primary, backup, answer);
        });
      });
    }
  }

  /** A candidate asks every other branch for its vote; each answer comes back as `voteAnswer`. */
  #requestVotes(candidate: Branch, request: Extract<BranchOutput, { type: "requestVotes" }>): void {
    for (const peer of (candidate.state as BranchState).peers) {
      const reaches = () => !this.#cut.has(pair(candidate.id, peer));
      this.#send({
        channel: `vote ${candidate.id}>${peer}`,
        ends: [candidate.id, peer],
        to: peer,
        deliver: () => {
          const voter = this.#branches.get(peer) as Branch;
          if (!reaches() || voter.state === undefined) return;
          const requestId = voter.nextRequestId++;
          voter.calls.set(requestId, (answer) => {
            if (answer.type !== "vote") return;
            this.#send({
              channel: `vote ${peer}>${candidate.id}`,
              ends: [candidate.id, peer],
              to: candidate.id,
              deliver: () => {
                if (!reaches()) return;
                const { view, granted } = answer;
                this.#feed(candidate, { type: "voteAnswer", from: peer, view, granted });
              },
            });
          });
          const { view, last } = request;
          this.#feed(voter, { type: "voteRequest", requestId, from: candidate.id, view, last });
        },
      });
    }
  }

  /** A backup's forward or read index, on its link with its primary, fed back as `decided` or `indexed`. */
  #ask(
    backup: number,
    requestId: number,
    kind: "forward" | "index",
    input: (id: number) => BranchInput,
  ): void {
    const branch = this.#branches.get(backup) as Branch;
    const primaryId = branch.state?.primary;
    const link = primaryId === undefined ? undefined : this.#links.get(`${primaryId}>${backup}`);
    if (primaryId === undefined || link === undefined || !link.live) {
      return this.#feed(branch, answerOf(kind, requestId, UNLINKED));
    }
    link.outstanding.set(requestId, kind);
    const on = { primary: primaryId, backup, generation: link.generation };
    this.#sendOnLink(on, "primary", () => {
      const primary = this.#branches.get(primaryId) as Branch;
      const id = primary.nextRequestId++;
      // Until it is answered, the backup is sent every entry at once, starting with those held for it
      // (see BranchNode's #asked).
      const holding = primary.holding;
      holding.asked(backup);
      this.#sendHeld(primary, backup);
      primary.calls.set(id, (output) => {
        holding.answered(backup);
        if (link.generation !== on.generation) return; // Its link broke meanwhile: nobody to answer.
        this.#sendOnLink(on, "backup", () => {
          link.outstanding.delete(requestId);
          this.#feed(branch, answerOf(kind, requestId, output));
        });
      });
      this.#feed(primary, input(id));
    });
  }

  /** Sends `deliver` on the link `on`, to the primary or to the backup; a break of the link drops it. */
  #sendOnLink(on: LinkRef, to: "primary" | "backup", deliver: () => void): void {
    const [from, destination] = to === "primary" ? [on.backup, on.primary] : [on.primary, on.backup];
    const ends = [on.primary, on.backup];
    this.#send({ channel: `${from}>${destination}`, link: on, ends, to: destination, deliver });
  }

  // ---- A branch's driver ----------------------------------------------------------------------------

  /**
   * Feeds `branch` an inbound call that its core answers at once (a link, a heartbeat), writes what that
   * persisted (a view it entered) before the answer leaves, as BranchNode does, and returns the answer.
   */
  #answer(branch: Branch, input: (requestId: number) => BranchInput): BranchOutput | undefined {
    let answer: BranchOutput | undefined;
    const requestId = branch.nextRequestId++;
    branch.calls.set(requestId, (output) => (answer = output));
    this.#feed(branch, input(requestId));
    this.#write(branch);
    return answer;
  }

  #feed(branch: Branch, input: BranchInput): void {
    if (branch.state === undefined) return;
    const { state, outbox } = step(branch.state, input);
    branch.state = state;
    for (const output of outbox) this.#carryOut(branch, output);
  }

  #carryOut(branch: Branch, output: BranchOutput): void {
    switch (output.type) {
      case "reply":
      case "ack":
      case "index":
      case "refuse":
      case "accept":
      case "vote": {
        // A vote leaves only once the ballot it gave is on the disk.
        if (output.type === "vote") this.#write(branch);
        const answer = branch.calls.get(output.requestId);
        branch.calls.delete(output.requestId);
        return answer?.(output);
      }
      case "persist":
        branch.unwritten.push(output);
        if (!isPrimary(branch.state as BranchState)) return; // Written with its batch, or before its vote.
        if (this.#options.bug === "shipBeforeWrite" && output.entry !== undefined) {
          this.#ship(branch, [output.entry.entry]);
        }
        if (branch.writing === undefined) {
          // The turn's write: it completes a few ticks later, and then the entries go out.
          const write = {};
          branch.writing = write;
          this.#after(1 + this.#random.below(this.#faults.maxDelayTicks + 1), () => {
            if (branch.writing === write) this.#write(branch); // Unless it crashed, or wrote, meanwhile.
          }, branch.id);
        }
        return;
      case "forward":
        return this.#ask(branch.id, output.requestId, "forward", (requestId) => ({
          type: "forward",
          requestId,
          from: branch.id,
          update: output.update,
          key: output.key,
        }));
      case "askIndex":
        return this.#ask(
          branch.id,
          output.requestId,
          "index",
          (requestId) => ({ type: "readIndex", requestId }),
        );
      case "heartbeat":
        return this.#heartbeat(branch, output);
      case "requestVotes":
        this.#write(branch); // Its own vote is on its disk before it asks for any.
        return this.#requestVotes(branch, output);
      case "role":
        if (output.role !== "primary") return this.#closeLinks(branch);
        if (output.view > 0) this.#elections++;
        return this.#openLinks(branch);
    }
  }

  /** Writes what `branch` persisted to its disk, and tells its core; a primary then sends the entries on. */
  #write(branch: Branch): void {
    const written = branch.unwritten.flatMap((persist) =>
      persist.entry === undefined ? [] : [persist.entry.entry]
    );
    this.#applyToDisk(branch);
    branch.writing = undefined;
    this.#feed(branch, { type: "synced" });
    const state = branch.state;
    if (this.#options.bug !== "shipBeforeWrite" && state !== undefined && isPrimary(state)) {
      this.#ship(branch, written);
    }
  }

  #applyToDisk(branch: Branch): void {
    const { disk } = branch;
    for (const persist of branch.unwritten) {
      if (persist.truncate !== undefined) {
        disk.entries.length = Math.min(disk.entries.length, persist.truncate);
      }
      if (persist.ballot !== undefined) disk.ballot = persist.ballot;
      if (persist.entry !== undefined) disk.entries.push(persist.entry);
      if (persist.failure !== undefined) disk.failures.push(persist.failure);
    }
    branch.unwritten = [];
  }

  /**
   * At a primary: sends `entries` at once to the live backups a commit or a customer waits on, with what
   * was held for them, and holds them for the others, who are sent all they are held within HOLD_TICKS.
   */
  #ship(primary: Branch, entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const state = primary.state as BranchState;
    const live = state.peers.filter((peer) => this.#links.get(`${primary.id}>${peer}`)?.live);
    for (const [backup, batch] of primary.holding.ship(state, live, entries)) {
      this.#sendEntries(primary.id, backup, batch);
    }
    if (!primary.holdTimer && primary.holding.holding) {
      primary.holdTimer = true;
      const tenure = primary.tenure;
      this.#after(HOLD_TICKS, () => {
        if (primary.tenure !== tenure) return;
        primary.holdTimer = false;
        for (const backup of primary.holding.heldFor()) this.#sendHeld(primary, backup);
      }, primary.id);
    }
  }

  /** At a primary: sends `backup` what is held for it, in one message, if anything. */
  #sendHeld(primary: Branch, backup: number): void {
    const held = primary.holding.take(backup);
    if (held !== undefined) this.#sendEntries(primary.id, backup, held);
  }

  // ---- Customers ------------------------------------------------------------------------------------

  /** Customer `customer`: its requests one after another, each sent again until it is answered. */
  #customer(customer: number): void {
    const scripts: Script[] = Array.from({ length: this.#options.requests }, () => {
      const kind = this.#random.pick(["query", "deposit", "withdraw"] as const);
      return {
        branch: this.#random.pick(this.#ids),
        interface: kind,
        amount: kind === "query" ? 0 : this.#random.below(80),
      };
    });
    const session = { seen: 0 };
    const next = (index: number): void => {
      const script = scripts[index];
      if (script === undefined) {
        this.#customersLeft--;
        return;
      }
      // The next request leaves a tick after this one's answer: sent in the tick it came, the checker
      // could not tell that it came after (it orders requests by complete < invoke).
      this.#request({ customer, index, script, session }, () => this.#after(1, () => next(index + 1)));
    };
    next(0);
  }

  /**
   * One request of a customer, sent (perhaps twice at once, with `duplicate`) and sent again after a
   * refusal or when its deadline passes, until it is answered; then it goes into the history, and `done`.
   */
  #request(request: CustomerRequest, done: () => void): void {
    const { customer, index, script, session } = request;
    const invoke = this.#tick;
    let attempts = 0;
    /** The attempt whose answer or deadline counts; 0 while waiting to send again, -1 once answered. */
    let current = 0;
    const send = () => {
      const mine = ++attempts;
      current = mine;
      const answer = (output: BranchOutput) => {
        if (mine !== current) return;
        if (output.type === "reply") {
          current = -1;
          session.seen = Math.max(session.seen, output.position);
          this.#requests.push(historyRequest(request, { invoke, complete: this.#tick }, output));
          return done();
        }
        if (output.type !== "refuse") return;
        if (output.refusal.code === "INVALID_ARGUMENT") {
          throw new Error(`customer ${customer}: ${output.refusal.message}`);
        }
        current = 0;
        this.#after(RETRY_TICKS, send);
      };
      const copies = this.#chance(this.#faults.duplicate) ? 2 : 1;
      if (copies === 2) this.#injected.duplicates++;
      for (let copy = 0; copy < copies; copy++) {
        const channel = `${customer}#${index}#${mine}#${copy}`;
        this.#call(script, { key: `${customer}/${index}`, after: session.seen, channel }, answer);
      }
      this.#after(DEADLINE_TICKS, () => {
        if (mine === current) send();
      });
    };
    send();
  }

  /** One call of a customer to a branch, on a channel of its own; `answer` gets the reply or refusal. */
  #call(
    script: Script,
    call: { readonly key: string; readonly after: number; readonly channel: string },
    answer: Answer,
  ): void {
    const { branch: to } = script;
    const { key, after, channel } = call;
    this.#send({
      channel: `customer ${channel}>`,
      ends: [to],
      to,
      deliver: () => {
        const branch = this.#branches.get(to) as Branch;
        if (branch.state === undefined) return; // Nobody listens: the customer's deadline passes.
        const requestId = branch.nextRequestId++;
        branch.calls.set(
          requestId,
          (output) =>
            this.#send({ channel: `customer ${channel}<`, ends: [to], deliver: () => answer(output) }),
        );
        this.#feed(branch, {
          type: "request",
          requestId,
          interface: script.interface,
          amount: script.amount,
          key,
          after,
        });
      },
    });
  }
}

/** `request`, answered with `reply`, as the history records it. */
function historyRequest(
  request: CustomerRequest,
  times: { readonly invoke: number; readonly complete: number },
  reply: Extract<BranchOutput, { type: "reply" }>,
): HistoryRequest {
  const { customer, index, script } = request;
  return {
    type: "request",
    customer,
    entry: customer - 1,
    event: index,
    eventId: null,
    branch: script.branch,
    interface: script.interface,
    amount: script.amount,
    ...times,
    success: reply.success,
    balance: reply.balance,
    position: reply.position,
  };
}

/** What a backup is told when its link with the primary is down or breaks. */
const UNLINKED: BranchOutput = {
  type: "refuse",
  requestId: 0,
  refusal: { code: "UNAVAILABLE", message: "no link with the primary" },
};

/** The input that gives a backup the primary's answer (`output`) to its forward or read index. */
function answerOf(kind: "forward" | "index", requestId: number, output: BranchOutput): BranchInput {
  const refusal = output.type === "refuse"
    ? output.refusal
    : { code: "INTERNAL", message: output.type } as const;
  if (kind === "index") {
    return output.type === "index"
      ? {
        type: "indexed",
        requestId,
        commit: output.commit,
        end: output.end,
        view: output.view,
        refusal: undefined,
      }
      : { type: "indexed", requestId, commit: undefined, end: undefined, refusal };
  }
  if (output.type === "reply") {
    const { success, balance, position } = output;
    return { type: "decided", requestId, decision: { success, balance, position }, refusal: undefined };
  }
  return { type: "decided", requestId, decision: undefined, refusal };
}

/** `items` in an order drawn from `random`. */
function shuffled<T>(items: readonly T[], random: Random): T[] {
  const result = [...items];
  for (let index = result.length - 1; index > 0; index--) {
    const other = random.below(index + 1);
    [result[index], result[other]] = [result[other] as T, result[index] as T];
  }
  return result;
}

function pair(a: number, b: number): string {
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}
