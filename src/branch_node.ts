/**
 * A branch process's driver: it serves gRPC, feeds each call to the pure core as an input, and carries
 * out the core's outbox (replies, entries, forwards and read indexes), sending the entries for a backup in
 * batches while one is in flight. No protocol decision is made here.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { assert } from "./assert.ts";
import {
  type BranchInput,
  type BranchOutput,
  type BranchState,
  type Entry,
  initialState,
  isPrimary,
  type ReadMode,
  type Refusal,
  step,
  type Update,
} from "./branch_core.ts";
import { deadline } from "./deadline.ts";
import { decodeEntry, decodeForward, decodeRequest, encodeResponse } from "./wire_codec.ts";
import {
  BranchClient,
  type BranchServer,
  type Link,
  type LinkAnswer,
  type LinkRequestHandler,
  RpcError,
  serveBranch,
} from "./transport.ts";

/** How a branch is started. */
export interface BranchNodeOptions {
  readonly id: number;
  /** Starting balance in units. */
  readonly balance: number;
  /** host:port to listen on; port 0 picks a free one. */
  readonly listen: string;
  /**
   * Deadline of each forward to the primary. Each entry the primary sends to a backup gets half of it, so
   * that a stalled backup is reported by name before the forward that waits for it runs out of time.
   */
  readonly forwardDeadlineMs: number;
  /** How queries are answered (see ReadMode). */
  readonly reads: ReadMode;
}

/** The outputs that answer an inbound call with a value. */
type Answering = Extract<BranchOutput, { type: "reply" | "ack" | "index" }>;

/** An inbound call the core has not answered yet. */
interface OpenCall {
  answer(output: Answering): void;
  reject(error: RpcError): void;
}

/** A running branch. It refuses customers until {@linkcode BranchNode.configure} gives it its peers. */
export class BranchNode {
  readonly #options: BranchNodeOptions;
  #server: BranchServer | undefined;
  #state: BranchState | undefined;
  /** At the primary: a client of each backup it was given the address of. */
  readonly #clients: BranchClient[] = [];
  /** At the primary, a link per backup; at a backup, its link from the primary. */
  readonly #links = new Map<number, Link>();
  /** Waiting for a link: at a backup, the primary's; at the primary, one to a backup (see linkTo). */
  readonly #arrivals = new Map<number, () => void>();
  /** This branch's place in the bank (primary or backup, and of which branches), once configured. */
  #layout: BranchState | undefined;
  /** Whether customers are served: once every link is up. */
  #serving = false;
  #nextRequestId = 1;
  readonly #calls = new Map<number, OpenCall>();
  /** At the primary: by backup, entries sequenced while one was in flight, sent when this turn ends. */
  readonly #outgoing = new Map<number, Entry[]>();

  private constructor(options: BranchNodeOptions) {
    this.#options = options;
  }

  /** Starts serving on `options.listen` (health: NOT_SERVING until configured). */
  static async start(options: BranchNodeOptions): Promise<BranchNode> {
    const node = new BranchNode(options);
    node.#server = await serveBranch(options.listen, {
      deliver: (request) => {
        const decoded = decodeRequest(request);
        if (!decoded.ok) return rejected(decoded.refusal);
        if (!node.#serving) {
          return Promise.reject(new RpcError("UNAVAILABLE", `branch ${options.id} is not serving yet`));
        }
        return node.#call((requestId) => ({ type: "request", requestId, ...decoded.value }), (output) => {
          assert(output.type === "reply", `a customer's request was answered with an ${output.type}`);
          return encodeResponse(output.interface, output.success, output.balance, output.position);
        });
      },
      linked: (peer, link) => node.#linked(peer, link),
    });
    return node;
  }

  /** The port the branch listens on. */
  get port(): number {
    assert(this.#server !== undefined, "branch server not started");
    return this.#server.port;
  }

  /**
   * Tells the branch which the other branches are (their ids) and waits until its links are up; then the
   * branch serves customers. The primary (the lowest id) opens a link to each backup when given its
   * address ({@linkcode BranchNode.linkTo}) and waits for each to accept it; a backup waits for the
   * primary's link and accepts it. Once only. Rejects with RpcError naming a branch whose link is not up
   * within `timeoutMs`.
   */
  async configure(peers: readonly number[], timeoutMs: number): Promise<void> {
    const self = this.#options.id;
    assert(this.#layout === undefined, `branch ${self} configured twice`);
    assert(this.#server !== undefined, "branch server not started");
    const state = initialState(self, this.#options.balance, peers, this.#options.reads);
    this.#layout = state;
    for (const [peer, link] of this.#links) {
      // Opened before this branch knew its place, by a branch that turns out not to be its primary.
      const refusal = this.#refusal(peer, state);
      if (refusal !== undefined) {
        link.refuse(refusal);
        this.#links.delete(peer);
      }
    }
    // The state is set first: entries and forwards may come as soon as a link is accepted.
    this.#state = state;
    const started = performance.now();
    if (isPrimary(state)) {
      await Promise.all(state.backups.map(async (backup) => {
        try {
          await this.#arrival(backup, timeoutMs, "was not given its address");
          await this.#link(backup).accepted(Math.max(1, timeoutMs - (performance.now() - started)));
        } catch (error) {
          throw new RpcError((error as RpcError).code, `backup ${backup}: ${(error as RpcError).message}`);
        }
      }));
    } else {
      this.#links.get(state.primary)?.accept();
      await this.#arrival(state.primary, timeoutMs, "did not open its link").catch((error: RpcError) => {
        throw new RpcError(error.code, `primary (branch ${state.primary}): ${error.message}`);
      });
    }
    this.#serving = true;
    this.#server.setServing(true);
  }

  /**
   * At the primary, after {@linkcode BranchNode.configure}: opens the link to `backup`, which listens at
   * `address` (host:port). Addresses may come one at a time, so links come up while other backups still
   * start.
   */
  linkTo(backup: number, address: string): void {
    const layout = this.#layout;
    assert(
      layout !== undefined && isPrimary(layout),
      `branch ${this.#options.id} is not a configured primary`,
    );
    assert(layout.backups.includes(backup), `branch ${backup} is not a backup of branch ${layout.id}`);
    assert(!this.#links.has(backup), `backup ${backup} is already linked`);
    const client = new BranchClient(address);
    this.#clients.push(client);
    const link = client.link(layout.id);
    link.serve(this.#linkHandler(backup));
    this.#links.set(backup, link);
    this.#arrivals.get(backup)?.();
  }

  /** Stops: ends every link, stops serving (calls in progress get up to `graceMs`), closes the clients. */
  async stop(graceMs: number): Promise<void> {
    for (const link of this.#links.values()) link.end();
    await this.#server?.shutdown(graceMs);
    for (const client of this.#clients) client.close();
    this.#links.clear();
  }

  /** A branch opened a link to this one: keep it, unless it is not this backup's primary or is a second. */
  #linked(peer: number, link: Link): RpcError | undefined {
    // Before configure() it is not known yet which branch is the primary: configure() decides.
    const refusal = this.#layout === undefined ? undefined : this.#refusal(peer, this.#layout);
    if (refusal !== undefined) return refusal;
    if (this.#links.has(peer)) return new RpcError("INVALID_ARGUMENT", `branch ${peer} is already linked`);
    link.serve(this.#linkHandler(peer));
    this.#links.set(peer, link);
    // Accepted only once configured: the primary takes the response headers to mean "ready for entries".
    if (this.#layout !== undefined) link.accept();
    this.#arrivals.get(peer)?.();
    return undefined;
  }

  /** Why branch `peer` may not link to a branch in `state`, if it may not. */
  #refusal(peer: number, state: BranchState): RpcError | undefined {
    if (isPrimary(state)) {
      return new RpcError("INVALID_ARGUMENT", `branch ${state.id} is the primary: it opens the links`);
    }
    if (peer !== state.primary) {
      return new RpcError(
        "INVALID_ARGUMENT",
        `branch ${peer} is not the primary of branch ${state.id} (branch ${state.primary} is)`,
      );
    }
    return undefined;
  }

  /**
   * Resolves once there is a link with `peer` (opened by the primary, at either end); rejects after
   * `timeoutMs` with "`what` within `timeoutMs` ms".
   */
  #arrival(peer: number, timeoutMs: number, what: string): Promise<void> {
    if (this.#links.has(peer)) return Promise.resolve();
    const arrived = new Promise<void>((resolve) => this.#arrivals.set(peer, resolve));
    return deadline(
      arrived,
      timeoutMs,
      () => new RpcError("DEADLINE_EXCEEDED", `${what} within ${timeoutMs} ms`),
    ).finally(() => this.#arrivals.delete(peer));
  }

  /** Feeds the requests arriving on the link with `peer` to the core: forwards and entries. */
  #linkHandler(peer: number): LinkRequestHandler {
    const answer = (output: Answering): LinkAnswer =>
      output.type === "index" ? { success: true, balance: 0, position: output.commit } : {
        success: output.type === "reply" ? output.success : true,
        balance: output.balance,
        position: output.position,
      };
    return (request) => {
      if (request.kind === "read") {
        return this.#call((requestId) => ({ type: "readIndex", requestId }), answer);
      }
      if (request.kind === "entry" || request.kind === "batch") {
        // Each entry of a batch is applied as if it came alone; the batch is answered for its last entry,
        // or with the first refusal (the entries before it stay applied).
        const applying: Promise<LinkAnswer>[] = [];
        for (const wire of request.kind === "entry" ? [request.entry] : request.batch.entries) {
          const entry = decodeEntry(wire);
          if (!entry.ok) {
            applying.push(rejected(entry.refusal));
            break;
          }
          applying.push(
            this.#call((requestId) => ({ type: "entry", requestId, entry: entry.value }), answer),
          );
        }
        if (applying.length === 0) return Promise.reject(new RpcError("INVALID_ARGUMENT", "an empty batch"));
        return Promise.all(applying).then((answers) => answers.at(-1) as LinkAnswer);
      }
      const update = decodeForward(request.forward);
      if (!update.ok) return rejected(update.refusal);
      return this.#call(
        (requestId) => ({ type: "forward", requestId, from: peer, ...update.value }),
        answer,
      );
    };
  }

  /** Registers an inbound call, feeds it to the core, and resolves with `encode` of the core's answer. */
  #call<T>(input: (requestId: number) => BranchInput, encode: (output: Answering) => T): Promise<T> {
    if (this.#state === undefined) {
      return Promise.reject(new RpcError("UNAVAILABLE", `branch ${this.#options.id} is not serving yet`));
    }
    const requestId = this.#nextRequestId++;
    const answered = new Promise<T>((resolve, reject) =>
      this.#calls.set(requestId, { answer: (output) => resolve(encode(output)), reject })
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
        return this.#take(output.requestId)?.answer(output);
      case "refuse":
        return this.#take(output.requestId)?.reject(
          new RpcError(output.refusal.code, output.refusal.message),
        );
      case "replicate":
        return this.#replicate(output.to, output.entry);
      case "forward":
        return this.#forward(output.requestId, output.update, output.key);
      case "askIndex":
        return this.#askIndex(output.requestId);
    }
  }

  #take(requestId: number): OpenCall | undefined {
    const call = this.#calls.get(requestId);
    assert(call !== undefined, `answer for unknown call ${requestId}`);
    this.#calls.delete(requestId);
    return call;
  }

  /** At a backup: its link with the primary. */
  #primaryLink(): Link {
    assert(this.#state !== undefined, "the primary is not known before configure");
    return this.#link(this.#state.primary);
  }

  #link(peer: number): Link {
    const link = this.#links.get(peer);
    assert(link !== undefined, `branch ${this.#options.id} has no link with branch ${peer}`);
    return link;
  }

  #askIndex(requestId: number): void {
    this.#primaryLink().send({ read: {} }, this.#options.forwardDeadlineMs).then(
      ({ position }) => this.#feed({ type: "indexed", requestId, commit: position, refusal: undefined }),
      (error: RpcError) =>
        this.#feed({ type: "indexed", requestId, commit: undefined, refusal: refusal(error) }),
    );
  }

  /**
   * Sends `entry` to `backup`, at once if nothing is in flight to it, or else with the other entries
   * sequenced in this turn of the event loop, as one message (an EntryBatch) answered once. With many
   * customers at once, a message per entry per backup was most of the primary's work; with one at a time,
   * waiting for the turn to end would only add latency.
   */
  #replicate(backup: number, entry: Entry): void {
    const queued = this.#outgoing.get(backup);
    if (queued !== undefined) {
      queued.push(entry);
      return;
    }
    if (this.#link(backup).inFlight === 0) {
      this.#sendEntries(backup, [entry]);
      return;
    }
    this.#outgoing.set(backup, [entry]);
    if (this.#outgoing.size === 1) setImmediate(() => this.#sendQueued());
  }

  #sendQueued(): void {
    for (const [backup, entries] of this.#outgoing) this.#sendEntries(backup, entries);
    this.#outgoing.clear();
  }

  #sendEntries(backup: number, entries: readonly Entry[]): void {
    const deadlineMs = Math.max(1, Math.floor(this.#options.forwardDeadlineMs / 2));
    const wire = entries.map(({ view, position, update, commit }) => ({
      view,
      position,
      interface: update.kind,
      amount: update.amount,
      commit,
    }));
    const feed = (failure: Refusal | undefined) => {
      for (const { position } of entries) {
        this.#feed({ type: "replicated", position, backup, refusal: failure });
      }
    };
    this.#link(backup).send({ batch: { entries: wire } }, deadlineMs).then(
      () => feed(undefined),
      (error: RpcError) => feed(refusal(error)),
    );
  }

  #forward(requestId: number, update: Update, key: string | undefined): void {
    const message = { forward: { interface: update.kind, amount: update.amount, key: key ?? "" } };
    this.#primaryLink().send(message, this.#options.forwardDeadlineMs).then(
      (decision) => this.#feed({ type: "decided", requestId, decision, refusal: undefined }),
      (error: RpcError) =>
        this.#feed({ type: "decided", requestId, decision: undefined, refusal: refusal(error) }),
    );
  }
}

/** A call answered with `refusal`'s status (a malformed request, refused before it reaches the core). */
function rejected(refusal: Refusal): Promise<never> {
  return Promise.reject(new RpcError(refusal.code, refusal.message));
}

/** A failed link request as the core's refusal (a status the core does not know is UNAVAILABLE). */
function refusal(error: RpcError) {
  return { code: error.code === "UNKNOWN" ? "UNAVAILABLE" as const : error.code, message: error.message };
}
