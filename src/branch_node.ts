/**
 * A branch process's driver: it serves gRPC, feeds each call to the pure core as an input, and carries
 * out the core's outbox: replies, forwards and read indexes; writes to disk, one transaction per turn of
 * the event loop (group commit); and at the primary, each turn's entries as one batch, at once to the
 * backups the core names (sendAtOnce) and within HOLD_MAX_MS to the others. It also keeps the primary's
 * links up: a link that breaks is opened again, and the backup is caught up from the primary's disk. With
 * failover it also feeds the core its ticks, sends its votes and heartbeats, and opens or closes the links
 * as the core says this branch leads or no longer does. No protocol decision is made here.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { assert } from "./assert.ts";
import {
  type Ballot,
  type BranchInput,
  type BranchOutput,
  type BranchState,
  type Election,
  type Entry,
  initialState,
  isPrimary,
  type Propagation,
  type ReadMode,
  type Refusal,
  type Role,
  roleOf,
  step,
  type Update,
} from "./branch_core.ts";
import { deadline } from "./deadline.ts";
import { Holding } from "./holding.ts";
import {
  type ClockEvent,
  LamportClock,
  type MessageAbout,
  type ProcessRef,
  RECORDED_EVENTS_MAX,
  type RequestRef,
} from "./lamport.ts";
import { type Batch, Storage } from "./storage.ts";
import {
  decodeEntry,
  decodeForward,
  decodeHeartbeat,
  decodeReadIndex,
  decodeRequest,
  decodeVoteRequest,
  encodeResponse,
  requestOfKey,
} from "./wire_codec.ts";
import {
  type Accepted,
  BranchClient,
  type BranchServer,
  type Link,
  type LinkAnswer,
  type LinkRequestHandler,
  type OutgoingLinkRequest,
  RpcError,
  serveBranch,
  type WireClockEvent,
  type WireEntry,
  type WireStatus,
} from "./transport.ts";

/** How a branch is started. */
export interface BranchNodeOptions {
  readonly id: number;
  /** Starting balance in units. */
  readonly balance: number;
  /** host:port to listen on; port 0 picks a free one. */
  readonly listen: string;
  /**
   * Deadline of each forward to the primary. Each batch of entries the primary sends to a backup gets half
   * of it, so that a stalled backup is noticed (and its link opened again) before the forward that waits
   * for it runs out of time.
   */
  readonly forwardDeadlineMs: number;
  /** How queries are answered (see ReadMode). */
  readonly reads: ReadMode;
  /** When the primary answers an update (see Propagation); default "sync". */
  readonly propagation?: Propagation;
  /**
   * Whether to keep every Lamport clock event of a customer's request, for Branch.events (default false:
   * a long-running branch would keep them without end). The clock runs either way.
   */
  readonly recordClocks?: boolean;
  /** Where the branch keeps its database; it recovers from what is there. */
  readonly dataDir: string;
  /**
   * Failover: when given, a primary that stops answering is replaced by election (see the core's
   * Election), with a tick every `tickMs`. Without it the lowest id is the primary for good.
   */
  readonly failover?: { readonly election: Election; readonly tickMs: number };
  /** Where to say what happened to links (a line each); stderr by default. */
  readonly log?: (message: string) => void;
  /**
   * Called when the disk fails: a branch that cannot write cannot keep its promises, and must stop
   * answering. By default it says so on stderr and exits with code 1.
   */
  readonly onDiskFailure?: (message: string) => never;
}

/** The outputs that answer an inbound call with a value. */
type Answering = Extract<BranchOutput, { type: "reply" | "ack" | "index" | "accept" | "vote" }>;

/** An inbound call the core has not answered yet. */
interface OpenCall {
  answer(output: Answering): void;
  reject(error: RpcError): void;
  /** For a customer's request: its key ("customer/request"), which a read index asked for it names. */
  readonly key: string | undefined;
}

/**
 * How many entries one message to a backup carries at most (more go in several): well under grpc-js's
 * 4 MB message limit even in a bundle of them (see Link), with keys at their longest.
 */
const ENTRIES_PER_MESSAGE_MAX = 1_000;
/** The wait before a broken link is opened again, doubling up to the maximum. */
const RELINK_FIRST_MS = 50;
const RELINK_MAX_MS = 1_000;
/** How long one try at a link waits for the backup to accept it before it is opened again. */
const LINK_ACCEPT_TIMEOUT_MS = 10_000;
/**
 * At the primary: how long a backup outside the quorum sent to at once (see sendAtOnce) may be left
 * without the entries written since, unless it asks for them. It is also the longest a commit waits when
 * a backup in that quorum stops answering without its link breaking (a paused process, say).
 */
const HOLD_MAX_MS = 100;

/** A running branch. It refuses customers until {@linkcode BranchNode.configure} gives it its peers. */
export class BranchNode {
  readonly #options: BranchNodeOptions;
  readonly #storage: Storage;
  readonly #log: (message: string) => void;
  #server: BranchServer | undefined;
  #state: BranchState | undefined;
  /** At the primary: a client of each backup it was given the address of. */
  readonly #clients = new Map<number, BranchClient>();
  /** At the primary: the link it opened to each backup. */
  readonly #links = new Map<number, Link>();
  /**
   * The links other branches opened to this one, by opener: at a backup, its primary's (with failover, also
   * those of primaries it no longer follows, until they break).
   */
  readonly #incoming = new Map<number, Link>();
  /**
   * With failover: how many times this branch became primary or stopped being it; a relink of an earlier
   * time as primary stops.
   */
  #tenure = 0;
  /** With failover: the timer that feeds the core its ticks. */
  #ticker: ReturnType<typeof setInterval> | undefined;
  /**
   * With failover: whether ticks reach the core. On a bank's first start a backup waits for view 0's
   * primary as long as it would without failover (the start timeout), rather than an election timeout:
   * its processes may all still be starting (fifty of them take seconds on two cores).
   */
  #ticking = true;
  #firstContact: ReturnType<typeof setTimeout> | undefined;
  /** With failover: whether this branch leads, with the links and timers of a primary (see #role). */
  #leading = false;
  /**
   * At the primary: the backups whose link is up and who have been sent, or are held (#holding), the whole log
   * written so far.
   */
  readonly #live = new Set<number>();
  /** At the primary: entries written and not sent yet, by live backup outside the quorum (see #ship). */
  readonly #holding = new Holding();
  #heldTimer: ReturnType<typeof setTimeout> | undefined;
  /** Waiting for a link: at a backup, the primary's; at the primary, a backup's to be live. */
  readonly #arrivals = new Map<number, () => void>();
  /** At the primary: timers that open a broken link again, and the wait before the next try, by backup. */
  readonly #relinks = new Map<number, { timer?: ReturnType<typeof setTimeout>; waitMs: number }>();
  /** At the primary: why the last link with each backup broke, for the message if it never comes up. */
  readonly #linkFailures = new Map<number, string>();
  /** This branch's place in the bank (primary or backup, and of which branches), once configured. */
  #layout: BranchState | undefined;
  /** Whether customers are served: once every link is up. */
  #serving = false;
  #stopping = false;
  #nextRequestId = 1;
  readonly #calls = new Map<number, OpenCall>();
  /** What the core asked to persist since the last write, written together (see #write). */
  #unwritten: Unwritten = emptyBatch();
  #writeScheduled = false;
  /** What this process has written: entries, and the transactions they took (group commit makes fewer). */
  readonly #written = { entries: 0, transactions: 0 };
  /** At the primary, once configured: the id of the log it keeps (see Storage.logId). */
  #logId = 0;
  /** This branch's Lamport clock: every message it sends carries it (see Branch.events). */
  readonly #clock: LamportClock;

  private constructor(options: BranchNodeOptions, storage: Storage) {
    this.#options = options;
    this.#storage = storage;
    this.#clock = new LamportClock({ record: options.recordClocks ?? false });
    this.#log = options.log ?? ((message) => console.error(`branch ${options.id}: ${message}`));
  }

  /**
   * Opens the branch's database in `options.dataDir` (throwing an Error naming it if it holds another branch's
   * data) and starts serving on `options.listen` (health: NOT_SERVING until configured).
   */
  static async start(options: BranchNodeOptions): Promise<BranchNode> {
    const node = new BranchNode(options, Storage.open(options.dataDir, options));
    try {
      node.#server = await serveBranch(options.listen, {
        deliver: (request) => {
          const decoded = decodeRequest(request);
          if (!decoded.ok) return rejected(decoded.refusal);
          const customer: ProcessRef = { type: "customer", id: request.customer_id };
          const about = node.#about(decoded.value.key);
          node.#clock.receive(customer, request.clock ?? 0, {
            message: "request",
            interface: decoded.value.interface,
            about,
          });
          if (!node.#serving) {
            return Promise.reject(new RpcError("UNAVAILABLE", `branch ${options.id} is not serving yet`));
          }
          return node.#call((requestId) => ({ type: "request", requestId, ...decoded.value }), (output) => {
            assert(output.type === "reply", `a customer's request was answered with an ${output.type}`);
            const clock = node.#clock.send(customer, {
              message: "reply",
              interface: output.interface,
              about,
            });
            return {
              ...encodeResponse(output.interface, output.success, output.balance, output.position),
              clock,
            };
          }, decoded.value.key);
        },
        linked: (peer, link) => node.#linked(peer, link),
        status: () => Promise.resolve(node.#status()),
        events: () => node.#recordedEvents(),
        vote: (request) => {
          const decoded = decodeVoteRequest(request);
          if (!decoded.ok) return rejected(decoded.refusal);
          if (options.failover === undefined) {
            return rejected({
              code: "FAILED_PRECONDITION",
              message: `branch ${options.id} runs without failover`,
            });
          }
          return node.#call(
            (requestId) => ({ type: "voteRequest", requestId, ...decoded.value }),
            (output) => {
              assert(output.type === "vote", `a vote request was answered with an ${output.type}`);
              return { view: output.view, granted: output.granted };
            },
          );
        },
      });
    } catch (error) {
      node.#storage.close();
      throw error;
    }
    return node;
  }

  /** The port the branch listens on. */
  get port(): number {
    assert(this.#server !== undefined, "branch server not started");
    return this.#server.port;
  }

  /**
   * Tells the branch which the other branches are (their ids), recovers its state from its disk, and
   * waits until its links are up; then the branch serves customers. The primary (the lowest id) opens a
   * link to each backup when given its address ({@linkcode BranchNode.linkTo}) and waits until each has
   * accepted it and been sent the log it lacks; a backup waits for the primary's link and accepts it.
   * Once only. Rejects with RpcError naming a branch whose link is not up within `timeoutMs`.
   */
  async configure(peers: readonly number[], timeoutMs: number): Promise<void> {
    const self = this.#options.id;
    assert(this.#layout === undefined, `branch ${self} configured twice`);
    assert(this.#server !== undefined, "branch server not started");
    const { balance, reads, propagation = "sync" } = this.#options;
    const recovered = this.#storage.recover();
    const election = this.#options.failover?.election;
    const state = initialState(self, balance, { peers, reads, propagation, recovered, election });
    this.#layout = state;
    const failover = this.#options.failover;
    if (failover === undefined) {
      for (const [peer, link] of this.#incoming) {
        // Opened before this branch knew its place: by a branch that may not be its primary, or of a log
        // this branch's disk does not hold.
        const refusal = this.#admit(peer, state, link);
        if (refusal !== undefined) {
          link.refuse(refusal);
          this.#incoming.delete(peer);
        }
      }
    }
    if (isPrimary(state) && failover === undefined) this.#takeLogId(); // With failover: #becomePrimary.
    // The state is set first: entries and forwards may come as soon as a link is accepted.
    this.#state = state;
    // What the disk held is this branch's own: a primary without backups has it committed at once.
    this.#feed({ type: "synced" });
    if (failover !== undefined) {
      // Set before the links opened early are taken: following one ends the wait (see #followLink).
      if (state.view === 0 && state.primary !== undefined && !isPrimary(state)) {
        this.#ticking = false;
        this.#firstContact = setTimeout(() => (this.#ticking = true), timeoutMs);
      }
      // Links come and go with elections: the branch serves at once, and refuses (UNAVAILABLE) what needs a
      // primary until it knows one. Links opened early are taken as any later one.
      for (const [peer, link] of [...this.#incoming]) {
        this.#incoming.delete(peer);
        const refusal = this.#linked(peer, link);
        if (refusal !== undefined) link.refuse(refusal);
      }
      if (isPrimary(this.#current())) this.#becomePrimary();
      this.#ticker = setInterval(() => {
        if (this.#ticking) this.#feed({ type: "tick" });
      }, failover.tickMs);
      this.#serving = true;
      this.#server.setServing(true);
      return;
    }
    if (isPrimary(state)) {
      await Promise.all(state.backups.map(async (backup) => {
        try {
          await this.#arrival(backup, timeoutMs, "was not given its address");
        } catch (error) {
          throw new RpcError((error as RpcError).code, `backup ${backup}: ${(error as RpcError).message}`);
        }
      }));
    } else {
      const primary = fixedPrimary(state);
      const early = this.#incoming.get(primary);
      if (early !== undefined) this.#accept(early, state);
      await this.#arrival(primary, timeoutMs, "did not open its link").catch((error: RpcError) => {
        throw new RpcError(error.code, `primary (branch ${primary}): ${error.message}`);
      });
    }
    this.#serving = true;
    this.#server.setServing(true);
  }

  /**
   * At the primary, after {@linkcode BranchNode.configure}: opens the link to `backup`, which listens at
   * `address` (host:port), and keeps it open from then on. Addresses may come one at a time, so links come
   * up while other backups still start.
   */
  linkTo(backup: number, address: string): void {
    if (this.#options.failover !== undefined) return this.addPeer(backup, address);
    const layout = this.#layout;
    assert(
      layout !== undefined && isPrimary(layout),
      `branch ${this.#options.id} is not a configured primary`,
    );
    assert(layout.backups.includes(backup), `branch ${backup} is not a backup of branch ${layout.id}`);
    assert(!this.#clients.has(backup), `backup ${backup} is already linked`);
    this.#clients.set(backup, new BranchClient(address));
    this.#openLink(backup);
  }

  /**
   * With failover, after {@linkcode BranchNode.configure}: branch `peer` listens at `address`. Every branch
   * may become primary, and then opens links to all the others; it asks them for votes when it stands.
   */
  addPeer(peer: number, address: string): void {
    assert(this.#options.failover !== undefined, "addPeer() is for failover; without it, linkTo()");
    const state = this.#current();
    assert(state.peers.includes(peer), `branch ${peer} is not a peer of branch ${state.id}`);
    assert(!this.#clients.has(peer), `branch ${peer} was given an address already`);
    this.#clients.set(peer, new BranchClient(address));
    if (isPrimary(state)) this.#openLink(peer);
  }

  /**
   * Stops: ends every link, stops serving (calls in progress get up to `graceMs`), closes the clients and
   * the database, and says how much it wrote.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#ticker);
    clearTimeout(this.#firstContact);
    for (const relink of this.#relinks.values()) clearTimeout(relink.timer);
    // Nothing more is sent while the server drains: what backups are held has no one to wait for it.
    clearTimeout(this.#heldTimer);
    this.#heldTimer = undefined;
    this.#holding.clear();
    for (const link of [...this.#links.values(), ...this.#incoming.values()]) link.end();
    await this.#server?.shutdown(graceMs);
    for (const client of this.#clients.values()) client.close();
    this.#links.clear();
    this.#incoming.clear();
    this.#storage.close();
    const { entries, transactions } = this.#written;
    this.#log(`wrote ${entries} entries in ${transactions} transaction${transactions === 1 ? "" : "s"}`);
  }

  /**
   * At the primary: opens a link to `backup`. Once the backup accepts it, naming the last position on its
   * disk, the backup is sent every entry after that from this branch's disk, and then, with the other
   * live backups, each batch as it is written. When the link breaks, it is opened again after a wait.
   */
  #openLink(backup: number): void {
    const client = this.#clients.get(backup);
    assert(client !== undefined && this.#state !== undefined, `no client of backup ${backup}`);
    const failover = this.#options.failover !== undefined;
    const link = client.link(this.#state.id, this.#logId, failover ? this.#state.view : undefined);
    const tenure = this.#tenure;
    link.serve(this.#linkHandler(backup, link, this.#links));
    this.#links.set(backup, link);
    link.onBroken((cause) => {
      if (this.#links.get(backup) === link) this.#links.delete(backup);
      this.#live.delete(backup);
      this.#holding.forget(backup); // The catch-up of the next link starts from the backup's disk.
      this.#linkFailures.set(backup, cause.message);
      // A backup in a later view refused the link: this branch enters it, and steps down.
      if (cause.view !== undefined && !this.#stopping) this.#feed({ type: "view", view: cause.view });
      if (this.#stopping || tenure !== this.#tenure || !isPrimary(this.#current())) return;
      const relink = this.#relinks.get(backup) ?? { waitMs: RELINK_FIRST_MS };
      this.#log(
        `link with backup ${backup} broke (${cause.message}); opening it again in ${relink.waitMs} ms`,
      );
      relink.timer = setTimeout(() => this.#openLink(backup), relink.waitMs);
      relink.waitMs = Math.min(RELINK_MAX_MS, relink.waitMs * 2);
      this.#relinks.set(backup, relink);
    });
    // A backup may be down for any time: each try waits a while, then the link is opened again.
    link.accepted(LINK_ACCEPT_TIMEOUT_MS).then(
      (accepted) => {
        if (link.broken || tenure !== this.#tenure || !isPrimary(this.#current())) return;
        this.#relinks.delete(backup);
        this.#catchUp(backup, link, accepted);
      },
      (error: RpcError) => link.abort(error), // onBroken opens it again.
    );
  }

  /**
   * At the primary: `backup` accepted `link` holding the log up to `position`. The core works out how much
   * of that is this branch's log; the backup is sent every later entry on this branch's disk, and made
   * live, all in one turn, so that the next batch written follows on the link.
   */
  #catchUp(backup: number, link: Link, accepted: Accepted): void {
    const state = this.#current();
    const { position, view, commit } = accepted;
    if (position > state.synced && this.#options.failover === undefined) {
      this.#log(`backup ${backup} holds position ${position}, beyond this branch's log (${state.synced})`);
    }
    // Without failover, every entry is of view 0, and a backup names no commit position (0 is true of any).
    this.#feed({ type: "linked", backup, position, view, commit });
    // The core says how much of the backup's log is this one's: it is sent the rest.
    const matched = this.#current().matched.get(backup) ?? 0;
    for (let from = matched + 1; from <= state.synced;) {
      const entries = this.#storage.entriesFrom(from, ENTRIES_PER_MESSAGE_MAX);
      if (entries.length === 0) break;
      from += entries.length;
      const last = from > state.synced;
      this.#sendEntries(
        backup,
        link,
        entries,
        last ? () => this.#log(`backup ${backup} caught up at position ${state.synced}`) : undefined,
      );
    }
    if (matched < state.synced) {
      this.#log(
        `backup ${backup} linked at position ${position}; sending it ${state.synced - matched} entries`,
      );
    }
    this.#live.add(backup);
    this.#arrivals.get(backup)?.();
  }

  /**
   * A branch opened a link to this one: keep it, unless it is not this backup's primary or its log is not
   * the one this backup holds.
   */
  #linked(peer: number, link: Link): RpcError | undefined {
    // Before configure() it is not known yet which branch is the primary: configure() decides.
    const layout = this.#state ?? this.#layout;
    const refusal = layout === undefined ? undefined : this.#admit(peer, layout, link);
    if (refusal !== undefined) return refusal;
    // With failover, the core decides whether to follow the opener (its view is at least this branch's).
    const failover = this.#options.failover !== undefined && this.#state !== undefined;
    const held = failover ? this.#followLink(peer, link) : undefined;
    if (held instanceof RpcError) return held;
    // The primary opens a new link when it thinks the old one broke (or it restarted): the new one wins.
    this.#incoming.get(peer)?.abort(new RpcError("UNAVAILABLE", `branch ${peer} opened a new link`));
    link.serve(this.#linkHandler(peer, link, this.#incoming));
    this.#incoming.set(peer, link);
    link.onBroken(() => {
      if (this.#incoming.get(peer) === link) this.#incoming.delete(peer);
    });
    // Accepted only once configured: the primary takes the response headers to mean "ready for entries
    // after this position".
    if (held !== undefined) link.accept(held);
    else if (this.#state !== undefined) this.#accept(link, this.#state);
    this.#arrivals.get(peer)?.();
    return undefined;
  }

  /**
   * At a backup: accepts its primary's `link`, naming the last position on its disk. A disk that names no
   * log yet takes the link's: from then on it holds a copy of that log and no other.
   */
  #accept(link: Link, state: BranchState): void {
    if (this.#storage.logId === undefined && link.logId !== undefined) this.#storage.setLogId(link.logId);
    link.accept(state.position);
  }

  /**
   * With failover: feeds the core a link `peer` opened, and returns what this branch's disk holds for the
   * opener (its new view, if it entered one, written first), or why the core refused it.
   */
  #followLink(peer: number, link: Link): Accepted | RpcError {
    // A disk that names no log yet, or holds an empty one, takes the opener's (see #admitLog).
    if (link.logId !== undefined && this.#storage.logId !== link.logId) this.#storage.setLogId(link.logId);
    let answer: Answering | RpcError | undefined;
    const requestId = this.#nextRequestId++;
    this.#calls.set(requestId, {
      answer: (output) => (answer = output),
      reject: (error) => (answer = error),
      key: undefined,
    });
    this.#feed({ type: "link", requestId, from: peer, view: link.view });
    this.#write();
    if (answer instanceof RpcError) return answer;
    assert(answer?.type === "accept", `a link was answered with ${answer?.type}`);
    // A primary has been heard from: from now on, silence counts.
    this.#ticking = true;
    clearTimeout(this.#firstContact);
    return { position: answer.last.position, view: answer.last.view, commit: answer.commit };
  }

  /** Why branch `peer` may not link to a branch in `state` with `link`, if it may not. */
  #admit(peer: number, state: BranchState, link: Link): RpcError | undefined {
    if (this.#options.failover !== undefined) return this.#admitLog(peer, state, link);
    if (isPrimary(state)) {
      return new RpcError("INVALID_ARGUMENT", `branch ${state.id} is the primary: it opens the links`);
    }
    if (peer !== fixedPrimary(state)) {
      return new RpcError(
        "INVALID_ARGUMENT",
        `branch ${peer} is not the primary of branch ${state.id} (branch ${state.primary} is)`,
      );
    }
    return this.#admitLog(peer, state, link);
  }

  /** Why `link` from branch `peer` may not be taken: it replicates a log other than this branch's. */
  #admitLog(peer: number, state: BranchState, link: Link): RpcError | undefined {
    const own = this.#storage.logId;
    if (link.logId === undefined) {
      return new RpcError("INVALID_ARGUMENT", "a link must name its log in a bank-log-id header");
    }
    // A disk that names no log yet holds none: it may take this one (see #accept). With failover, neither
    // does one whose log is empty: the lowest id restarted with its directory emptied names a log of its own
    // (see sequence in the core), and must take the bank's when its primary links.
    const empty = this.#options.failover !== undefined && state.position === 0;
    if (own !== undefined ? own !== link.logId && !empty : state.position > 0) {
      return new RpcError(
        "FAILED_PRECONDITION",
        `branch ${state.id} holds a copy of log ${
          own ?? "(unnamed)"
        }, not of log ${link.logId} that branch ` +
          `${peer} keeps: its data directory is another bank's`,
      );
    }
    return undefined;
  }

  /**
   * Resolves once there is a link with `peer`: at a backup, the primary's; at the primary, a live one to
   * backup `peer`. Rejects after `timeoutMs` with "`what` within `timeoutMs` ms".
   */
  #arrival(peer: number, timeoutMs: number, what: string): Promise<void> {
    if (this.#live.has(peer) || (!isPrimary(this.#current()) && this.#links.has(peer))) {
      return Promise.resolve();
    }
    const arrived = new Promise<void>((resolve) => this.#arrivals.set(peer, resolve));
    return deadline(arrived, timeoutMs, () => {
      // Looked up now: at the primary, the address may have come (and links failed) since the wait began.
      const client = this.#clients.get(peer);
      const failure = this.#linkFailures.get(peer);
      const message = client === undefined
        ? `${what} within ${timeoutMs} ms`
        : `${client.address} did not accept a link within ${timeoutMs} ms` +
          (failure === undefined ? "" : ` (last: ${failure})`);
      return new RpcError("DEADLINE_EXCEEDED", message);
    }).finally(() => this.#arrivals.delete(peer));
  }

  /**
   * Feeds the requests arriving on `link` with `peer` to the core: forwards and entries, while it is the
   * current link with `peer` (what a replaced link still delivers is refused).
   */
  #linkHandler(peer: number, link: Link, links: ReadonlyMap<number, Link>): LinkRequestHandler {
    const from: ProcessRef = { type: "branch", id: peer };
    // The answer to a request is a message of its own: it carries this branch's clock when it is made.
    const answer = (what: MessageAbout | undefined) => (output: Answering): LinkAnswer => ({
      ...(output.type === "index"
        ? { success: true, balance: 0, position: output.commit, end: output.end, commitView: output.view }
        : output.type === "accept" || output.type === "vote"
        ? { success: false, balance: 0, position: 0 } // Neither answers a link request.
        : {
          success: output.type === "reply" ? output.success : true,
          balance: output.balance,
          position: output.position,
        }),
      ...(what === undefined ? {} : { clock: this.#clock.send(from, what) }),
    });
    return (request) => {
      if (links.get(peer) !== link) {
        return Promise.reject(new RpcError("UNAVAILABLE", `a link with branch ${peer} that was replaced`));
      }
      if (request.kind === "heartbeat") {
        const beat = decodeHeartbeat(request.heartbeat);
        if (!beat.ok) return rejected(beat.refusal);
        this.#clock.receive(from, request.heartbeat.clock ?? 0, HEARTBEAT);
        const answered = this.#call(
          (requestId) => ({ type: "heartbeat", requestId, from: peer, view: link.view, ...beat.value }),
          answer(undefined),
        );
        this.#write(); // A view it entered is on its disk before the answer leaves.
        return answered;
      }
      if (request.kind === "read") {
        const key = decodeReadIndex(request.read);
        if (!key.ok) return rejected(key.refusal);
        const what = { message: "read", interface: "query", about: this.#about(key.value) } as const;
        this.#clock.receive(from, request.read.clock ?? 0, what);
        return this.#asked(
          peer,
          this.#call(
            (requestId) => ({ type: "readIndex", requestId }),
            answer({ ...what, message: "index" }),
          ),
        );
      }
      if (request.kind === "entry" || request.kind === "batch") {
        // Each entry of a batch is applied as if it came alone; the batch is written to disk in one
        // transaction before any answer leaves, and answered for its last entry, or with the first
        // refusal (the entries before it stay applied).
        const applying: Promise<LinkAnswer>[] = [];
        let ack: MessageAbout | undefined;
        for (const wire of request.kind === "entry" ? [request.entry] : request.batch.entries) {
          const entry = decodeEntry(wire);
          if (!entry.ok) {
            applying.push(rejected(entry.refusal));
            break;
          }
          ack = { message: "ack", interface: entry.value.update.kind, about: this.#about(entry.value.key) };
          this.#clock.receive(from, wire.clock ?? 0, { ...ack, message: "entry" });
          applying.push(
            this.#call(
              (requestId) => ({
                type: "entry",
                requestId,
                entry: entry.value,
                from: peer,
                view: link.view,
              }),
              answer(undefined),
            ),
          );
        }
        this.#write();
        if (applying.length === 0) return Promise.reject(new RpcError("INVALID_ARGUMENT", "an empty batch"));
        // One ack answers the batch, the last entry's: it ticks the clock when it leaves, and only if it
        // does (a refusal carries none).
        return Promise.all(applying).then((answers) => ({
          ...answers.at(-1) as LinkAnswer,
          clock: this.#clock.send(from, ack as MessageAbout),
        }));
      }
      const update = decodeForward(request.forward);
      if (!update.ok) return rejected(update.refusal);
      const what = { interface: update.value.update.kind, about: this.#about(update.value.key) };
      this.#clock.receive(from, request.forward.clock ?? 0, { message: "forward", ...what });
      return this.#asked(
        peer,
        this.#call(
          (requestId) => ({ type: "forward", requestId, from: peer, ...update.value }),
          answer({ message: "answer", ...what }),
        ),
      );
    };
  }

  /**
   * At the primary: `backup` waits on `answered`, a forward or a read index of its customer's. Until it is
   * answered the backup is sent every entry at once: to answer a query at a read index it must have applied
   * that far, and its customer's next request (a query naming the position just answered, with local reads)
   * most likely comes to it too. What is held for it goes at the end of this turn, with the entry its
   * forward becomes if it becomes one (one batch, one write there).
   */
  #asked(backup: number, answered: Promise<LinkAnswer>): Promise<LinkAnswer> {
    this.#holding.asked(backup);
    // After #write, if the request scheduled one: this turn's entries and the held ones go together.
    if (this.#holding.holds(backup)) setImmediate(() => this.#sendHeld(backup));
    return answered.finally(() => this.#holding.answered(backup));
  }

  /** Registers an inbound call, feeds it to the core, and resolves with `encode` of the core's answer. */
  #call<T>(
    input: (requestId: number) => BranchInput,
    encode: (output: Answering) => T,
    key?: string,
  ): Promise<T> {
    if (this.#state === undefined) {
      return Promise.reject(new RpcError("UNAVAILABLE", `branch ${this.#options.id} is not serving yet`));
    }
    const requestId = this.#nextRequestId++;
    const answered = new Promise<T>((resolve, reject) =>
      this.#calls.set(requestId, { answer: (output) => resolve(encode(output)), reject, key })
    );
    this.#feed(input(requestId));
    return answered;
  }

  #feed(input: BranchInput): void {
    assert(this.#state !== undefined, "fed before configure");
    const { state, outbox } = step(this.#state, input);
    this.#state = state;
    for (const output of outbox) this.#carryOut(output);
  }

  #carryOut(output: BranchOutput): void {
    switch (output.type) {
      case "reply":
      case "ack":
      case "index":
      case "accept":
        return this.#take(output.requestId)?.answer(output);
      case "vote":
        this.#write(); // The vote is on this branch's disk before it leaves.
        return this.#take(output.requestId)?.answer(output);
      case "refuse":
        return this.#take(output.requestId)?.reject(
          new RpcError(output.refusal.code, output.refusal.message, output.refusal.view),
        );
      case "persist":
        return this.#persist(output);
      case "forward":
        return this.#forward(output.requestId, output.update, output.key);
      case "askIndex":
        return this.#askIndex(output.requestId);
      case "heartbeat":
        return this.#heartbeat(output);
      case "requestVotes":
        this.#write(); // Its own vote is on its disk before it asks for any.
        return this.#requestVotes(output);
      case "role":
        return this.#role(output.role, output.view);
    }
  }

  #take(requestId: number): OpenCall | undefined {
    const call = this.#calls.get(requestId);
    assert(call !== undefined, `answer for unknown call ${requestId}`);
    this.#calls.delete(requestId);
    return call;
  }

  /**
   * Queues what the core asked to persist. A backup writes it before the entries' answers leave (see
   * #linkHandler); the primary when the turn of the event loop ends, with everything else the turn
   * decided: with many customers at once, one transaction (one fsync) and one batch per backup covers
   * many updates.
   */
  #persist(output: Extract<BranchOutput, { type: "persist" }>): void {
    const unwritten = this.#unwritten;
    if (output.truncate !== undefined) {
      // What is queued past the cut never reaches the disk; the cut goes first in the transaction.
      const kept = unwritten.entries.findIndex((entry) => entry.position > (output.truncate as number));
      if (kept !== -1) {
        unwritten.entries.length = kept;
        unwritten.balances.length = kept;
      }
      unwritten.truncate = Math.min(unwritten.truncate ?? output.truncate, output.truncate);
    }
    if (output.ballot !== undefined) unwritten.ballot = output.ballot;
    if (output.entry !== undefined) {
      this.#unwritten.entries.push(output.entry.entry);
      this.#unwritten.balances.push(output.entry.balance);
    }
    if (output.failure !== undefined) this.#unwritten.failures.push(output.failure);
    if (this.#writeScheduled || !isPrimary(this.#current())) return;
    this.#writeScheduled = true;
    setImmediate(() => this.#write());
  }

  /**
   * Writes what is queued in one transaction, tells the core it is synced, and at the primary ships the
   * new entries (#ship). A branch whose disk fails cannot keep its promises: it exits.
   */
  #write(): void {
    this.#writeScheduled = false;
    const batch = this.#unwritten;
    this.#unwritten = emptyBatch();
    if (
      batch.entries.length > 0 || batch.failures.length > 0 || batch.truncate !== undefined ||
      batch.ballot !== undefined
    ) {
      try {
        this.#storage.write(batch);
        this.#written.entries += batch.entries.length;
        this.#written.transactions++;
      } catch (error) {
        const message = `cannot write to ${this.#options.dataDir}: ${(error as Error).message}`;
        (this.#options.onDiskFailure ?? exitWith)(message);
      }
    }
    this.#feed({ type: "synced" });
    if (batch.entries.length > 0 && isPrimary(this.#current())) this.#ship(batch.entries);
  }

  /**
   * At the primary: sends `entries`, just written, to the live backups that a commit or a customer waits
   * on (see sendAtOnce), and holds them for the others, who are sent what is held for them within
   * HOLD_MAX_MS, or at once when they ask the primary for anything.
   */
  #ship(entries: readonly Entry[]): void {
    if (this.#stopping) return;
    for (const [backup, batch] of this.#holding.ship(this.#current(), this.#live, entries)) {
      this.#sendBatches(backup, batch);
    }
    if (this.#holding.holding && this.#heldTimer === undefined) {
      this.#heldTimer = setTimeout(() => {
        this.#heldTimer = undefined;
        for (const backup of this.#holding.heldFor()) this.#sendHeld(backup);
      }, HOLD_MAX_MS);
    }
  }

  /** At the primary: sends `backup` what is held for it, if anything. */
  #sendHeld(backup: number): void {
    if (this.#stopping) return;
    const held = this.#holding.take(backup);
    if (held !== undefined) this.#sendBatches(backup, held);
  }

  /** At the primary: sends `entries` to live `backup`, in messages of at most ENTRIES_PER_MESSAGE_MAX. */
  #sendBatches(backup: number, entries: readonly Entry[]): void {
    const link = this.#link(backup);
    for (let from = 0; from < entries.length; from += ENTRIES_PER_MESSAGE_MAX) {
      this.#sendEntries(backup, link, entries.slice(from, from + ENTRIES_PER_MESSAGE_MAX));
    }
  }

  /** With failover: the core says this branch is now `role` in `view`. */
  #role(role: Role, view: number): void {
    if (role === "primary") {
      this.#log(`became primary of view ${view}`);
      return this.#becomePrimary();
    }
    if (this.#leading) {
      // Whatever links it has left (one that broke with a later view is gone already) stop, and none opens.
      const primary = this.#current().primary;
      this.#log(`stepped down in view ${view}${primary === undefined ? "" : `: branch ${primary} leads it`}`);
      this.#leading = false;
      this.#tenure++;
      for (const relink of this.#relinks.values()) clearTimeout(relink.timer);
      this.#relinks.clear();
      clearTimeout(this.#heldTimer);
      this.#heldTimer = undefined;
      this.#holding.clear();
      this.#live.clear();
      const links = [...this.#links.values()];
      this.#links.clear();
      for (const link of links) {
        link.abort(new RpcError("UNAVAILABLE", `branch ${this.#options.id} stepped down`));
      }
    }
    if (role === "candidate") this.#log(`standing for primary of view ${view}`);
  }

  /** With failover: this branch is primary of `view`: it opens a link to every branch it knows the address of. */
  #becomePrimary(): void {
    this.#leading = true;
    this.#tenure++;
    this.#takeLogId();
    for (const peer of this.#clients.keys()) this.#openLink(peer);
  }

  /** At a primary: the log it keeps is the one its disk names, or a new one if its disk names none yet. */
  #takeLogId(): void {
    const stored = this.#storage.logId;
    this.#logId = stored ?? newLogId();
    if (stored === undefined) this.#storage.setLogId(this.#logId);
  }

  /** At the primary: the deadline of each message to a backup, half a forward's (see forwardDeadlineMs). */
  #backupDeadlineMs(): number {
    return Math.max(1, Math.floor(this.#options.forwardDeadlineMs / 2));
  }

  /** At the primary, with failover: sends `beat` on every live link; each answer confirms its round. */
  #heartbeat(beat: Extract<BranchOutput, { type: "heartbeat" }>): void {
    if (this.#stopping) return;
    const deadlineMs = this.#backupDeadlineMs();
    const { last, commit, round } = beat;
    for (const backup of this.#live) {
      const link = this.#links.get(backup);
      if (link === undefined) continue;
      const clock = this.#clock.send({ type: "branch", id: backup }, HEARTBEAT);
      const heartbeat = { last_position: last.position, last_view: last.view, commit, round, clock };
      link.send({ heartbeat }, deadlineMs).then(
        () => {
          if (!this.#stopping) this.#feed({ type: "confirmed", backup, round });
        },
        (error: RpcError) => {
          if (error.view !== undefined && !this.#stopping) this.#feed({ type: "view", view: error.view });
        },
      );
    }
  }

  /** With failover: asks every other branch for its vote; each answer goes to the core. */
  #requestVotes(request: Extract<BranchOutput, { type: "requestVotes" }>): void {
    const { view, last } = request;
    this.#log(`asking for votes in view ${view}`);
    const vote = { candidate: this.#options.id, view, last_position: last.position, last_view: last.view };
    for (const [peer, client] of this.#clients) {
      client.vote(vote, this.#options.forwardDeadlineMs).then(
        (answer) => {
          if (this.#stopping) return;
          this.#feed({ type: "voteAnswer", from: peer, view: answer.view, granted: answer.granted });
        },
        () => {}, // A branch that does not answer gives no vote.
      );
    }
  }

  /** Where this branch stands, for Branch.status. */
  #status(): WireStatus {
    const state = this.#state;
    const { id, balance } = this.#options;
    if (state === undefined) {
      const base = {
        view: 0,
        position: 0,
        commit: 0,
        synced: 0,
        balance,
        serving: false,
        backups: [],
        noops: [],
      };
      return { id, role: "starting", ...base };
    }
    return {
      id,
      role: roleOf(state),
      view: state.view,
      position: state.position,
      commit: state.commit,
      synced: state.synced,
      balance: state.balance,
      serving: this.#serving,
      backups: state.backups.map((backup) => ({
        id: backup,
        live: this.#live.has(backup),
        matched: state.matched.get(backup) ?? 0,
      })),
      // Only with failover is there any; a run without it does not read its log for them.
      noops: this.#options.failover === undefined ? [] : this.#storage.noOps(),
    };
  }

  /** The clock events recorded (Branch.events), refused when the record is not whole. */
  #recordedEvents(): Promise<readonly WireClockEvent[]> {
    if (this.#clock.overflowed) {
      const message =
        `branch ${this.#options.id} recorded more than ${RECORDED_EVENTS_MAX} clock events, and ` +
        "kept only the first: its record is not whole";
      return Promise.reject(new RpcError("FAILED_PRECONDITION", message));
    }
    return Promise.resolve(this.#clock.events().map(wireClockEvent));
  }

  /**
   * The customer request a message with `key` belongs to, for the clock's record; undefined when nothing
   * is recorded (the clock then has no use for it, and a backup sends thousands of entries a second).
   */
  #about(key: string | undefined): RequestRef | undefined {
    return this.#options.recordClocks ? requestOfKey(key) : undefined;
  }

  /** The core's state, once configured. */
  #current(): BranchState {
    assert(this.#state !== undefined, `branch ${this.#options.id} is not configured`);
    return this.#state;
  }

  /** At the primary: its link to backup `peer`. */
  #link(peer: number): Link {
    const link = this.#links.get(peer);
    assert(link !== undefined, `branch ${this.#options.id} has no link with branch ${peer}`);
    return link;
  }

  /**
   * At the primary: sends `entries` to `backup` as one message, and feeds its answer back (then calls
   * `onApplied`, if given). A backup that refuses them, or does not answer in time, has its link broken, to
   * be opened again and caught up from where the backup's disk says it is.
   */
  #sendEntries(backup: number, link: Link, entries: readonly Entry[], onApplied?: () => void): void {
    const deadlineMs = this.#backupDeadlineMs();
    const to: ProcessRef = { type: "branch", id: backup };
    const wire = entries.map(({ view, position, update, key, commit, failed }): WireEntry => ({
      view,
      position,
      interface: update.kind,
      amount: update.amount,
      commit,
      key: key ?? "",
      failed: failed ?? false,
      clock: this.#clock.send(to, { message: "entry", interface: update.kind, about: this.#about(key) }),
    }));
    const { position: last, update, key } = entries.at(-1) as Entry;
    link.send({ batch: { entries: wire } }, deadlineMs).then(
      (ack) => {
        const what = { message: "ack", interface: update.kind, about: this.#about(key) } as const;
        this.#clock.receive(to, ack.clock ?? 0, what);
        this.#feed({ type: "replicated", backup, position: last });
        onApplied?.();
      },
      (error: RpcError) => {
        if (link.broken) return;
        const why = refusal(error);
        // A backup in a later view refused them: this branch enters it (and steps down, ending the link).
        link.abort(new RpcError(why.code, `entries to position ${last}: ${why.message}`, error.view));
      },
    );
  }

  /** At a backup: sends `request` to the primary; rejects UNAVAILABLE when there is no link with it. */
  #sendToPrimary(request: OutgoingLinkRequest): Promise<LinkAnswer> {
    const state = this.#current();
    const link = state.primary === undefined ? undefined : this.#incoming.get(state.primary);
    if (link !== undefined && !link.broken) return link.send(request, this.#options.forwardDeadlineMs);
    const message = `branch ${state.id} has no link with the primary (branch ${
      state.primary ?? "not known"
    })`;
    return rejected({ code: "UNAVAILABLE", message });
  }

  /** Asks the primary for a read index, for the customer's query that is call `requestId`. */
  #askIndex(requestId: number): void {
    const primary: ProcessRef = { type: "branch", id: this.#current().primary ?? 0 };
    const key = this.#calls.get(requestId)?.key;
    const what = { message: "read", interface: "query", about: this.#about(key) } as const;
    this.#sendToPrimary({ read: { clock: this.#clock.send(primary, what), key: key ?? "" } }).then(
      ({ position, end = 0, clock = 0, commitView }) => {
        this.#clock.receive(primary, clock, { ...what, message: "index" });
        this.#feed({
          type: "indexed",
          requestId,
          commit: position,
          end,
          view: commitView,
          refusal: undefined,
        });
      },
      (error: RpcError) =>
        this.#feed({
          type: "indexed",
          requestId,
          commit: undefined,
          end: undefined,
          refusal: refusal(error),
        }),
    );
  }

  #forward(requestId: number, update: Update, key: string | undefined): void {
    const primary: ProcessRef = { type: "branch", id: this.#current().primary ?? 0 };
    const what = { interface: update.kind, about: this.#about(key) };
    const clock = this.#clock.send(primary, { message: "forward", ...what });
    const message = { forward: { interface: update.kind, amount: update.amount, key: key ?? "", clock } };
    this.#sendToPrimary(message).then(
      (decision) => {
        this.#clock.receive(primary, decision.clock ?? 0, { message: "answer", ...what });
        this.#feed({ type: "decided", requestId, decision, refusal: undefined });
      },
      (error: RpcError) =>
        this.#feed({ type: "decided", requestId, decision: undefined, refusal: refusal(error) }),
    );
  }
}

/** The primary of `state`'s bank without failover, where it is always known (the lowest id). */
function fixedPrimary(state: BranchState): number {
  assert(state.primary !== undefined, `branch ${state.id} knows of no primary`);
  return state.primary;
}

/** A heartbeat, for the clock: a message of no customer's request, recorded nowhere. */
const HEARTBEAT: MessageAbout = { message: "read", interface: "query", about: undefined };

/** A recorded clock event as Branch.events sends it. */
function wireClockEvent(event: ClockEvent): WireClockEvent {
  return {
    clock: event.clock,
    kind: event.kind,
    peer_type: event.peer.type,
    peer_id: event.peer.id,
    message: event.message,
    interface: event.interface,
    customer_id: event.about.customer,
    request_id: event.about.request,
    sent: event.sent ?? 0,
  };
}

/** The default reaction to a failed disk: one line on stderr, and exit 1. */
function exitWith(message: string): never {
  console.error(`branch: ${message}`);
  Deno.exit(1);
}

/** A new log's id: a random safe integer, so two banks' logs are told apart. */
function newLogId(): number {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2)) as unknown as [number, number];
  return (high & 0x1fffff) * 2 ** 32 + low;
}

/** What the core asked to persist and is not written yet (see Batch). */
interface Unwritten {
  entries: Entry[];
  balances: number[];
  failures: Batch["failures"][number][];
  truncate?: number;
  ballot?: Ballot;
}

function emptyBatch(): Unwritten {
  return { entries: [], balances: [], failures: [] };
}

/** A call answered with `refusal`'s status (a malformed request, refused before it reaches the core). */
function rejected(refusal: Refusal): Promise<never> {
  return Promise.reject(new RpcError(refusal.code, refusal.message, refusal.view));
}

/** A failed link request as the core's refusal (a status the core does not know is UNAVAILABLE). */
function refusal(error: RpcError): Refusal {
  const code = error.code === "UNKNOWN" ? "UNAVAILABLE" as const : error.code;
  return error.view === undefined
    ? { code, message: error.message }
    : { code, message: error.message, view: error.view };
}
