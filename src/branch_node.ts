/**
 * A branch process's driver: it serves gRPC, feeds each call to the pure core as an input, and carries
 * out the core's outbox (replies and propagations). No protocol decision is made here.
 *
 * @module
 */

import { assert } from "./assert.ts";
import {
  type BranchInput,
  type BranchOutput,
  type BranchState,
  initialState,
  step,
  type Update,
} from "./branch_core.ts";
import { deadline } from "./deadline.ts";
import { decodePropagation, decodeRequest, encodeResponse } from "./wire_codec.ts";
import {
  BranchClient,
  type BranchServer,
  type Link,
  type Outgoing,
  type PropagationHandler,
  RpcError,
  serveBranch,
  type WireResponse,
} from "./transport.ts";

/** How a branch is started. */
export interface BranchNodeOptions {
  readonly id: number;
  /** Starting balance in units. */
  readonly balance: number;
  /** host:port to listen on; port 0 picks a free one. */
  readonly listen: string;
  /** Deadline of each propagation call. */
  readonly propagateDeadlineMs: number;
}

/** What an inbound call is answered with: a response for a customer, a balance for a propagation. */
type Answer = Outgoing<WireResponse> | number;

/** A running branch. It refuses customers until {@linkcode BranchNode.configure} gives it its peers. */
export class BranchNode {
  readonly #options: BranchNodeOptions;
  #server: BranchServer | undefined;
  #state: BranchState | undefined;
  /** Clients of the peers this branch opens links to (those with a higher id). */
  readonly #clients = new Map<number, BranchClient>();
  /** A link per peer, whichever side opened it. */
  readonly #links = new Map<number, Link>();
  /** Waiting for a link that a peer with a lower id is to open. */
  readonly #arrivals = new Map<number, () => void>();
  #peers: ReadonlySet<number> | undefined;
  #nextRequestId = 1;
  readonly #calls = new Map<number, { resolve(answer: Answer): void; reject(error: RpcError): void }>();

  private constructor(options: BranchNodeOptions) {
    this.#options = options;
  }

  /** Starts serving on `options.listen` (health: NOT_SERVING until configured). */
  static async start(options: BranchNodeOptions): Promise<BranchNode> {
    const node = new BranchNode(options);
    node.#server = await serveBranch(options.listen, {
      deliver: (request) => {
        const decoded = decodeRequest(request);
        if (!decoded.ok) return Promise.reject(new RpcError(decoded.refusal.code, decoded.refusal.message));
        return node.#call<Outgoing<WireResponse>>((requestId) => ({
          type: "request",
          requestId,
          ...decoded.value,
        }));
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
   * Gives the branch its peers (id to host:port). It opens a link to each peer with a higher id, waits
   * for each peer with a lower id to open one to it, and once every link is up, starts serving
   * customers. Once only. Rejects with RpcError naming a peer whose link is not up within `timeoutMs`.
   */
  async configure(peers: ReadonlyMap<number, string>, timeoutMs: number): Promise<void> {
    const self = this.#options.id;
    assert(this.#peers === undefined, `branch ${self} configured twice`);
    assert(this.#server !== undefined, "branch server not started");
    this.#peers = new Set(peers.keys());
    for (const [peer, link] of this.#links) {
      // Opened before this branch knew its peers, by a branch that turns out not to be one.
      if (!this.#peers.has(peer) || peer > self) link.end();
    }
    for (const [peer, address] of peers) {
      if (peer < self) continue;
      const client = new BranchClient(address);
      this.#clients.set(peer, client);
      const link = client.link(self);
      link.serve(this.#propagationHandler(peer));
      this.#links.set(peer, link);
    }
    await Promise.all(
      [...peers.keys()].map((peer) =>
        (peer > self ? (this.#links.get(peer) as Link).accepted(timeoutMs) : this.#arrival(peer, timeoutMs))
          .catch((error: RpcError) => {
            throw new RpcError(error.code, `branch ${peer}: ${error.message}`);
          })
      ),
    );
    this.#state = initialState(self, this.#options.balance, [...peers.keys()]);
    this.#server.setServing(true);
  }

  /** Stops: ends every link, stops serving (calls in progress get up to `graceMs`), closes every client. */
  async stop(graceMs: number): Promise<void> {
    for (const link of this.#links.values()) link.end();
    await this.#server?.shutdown(graceMs);
    for (const client of this.#clients.values()) client.close();
    this.#links.clear();
    this.#clients.clear();
  }

  /** A peer opened a link to this branch: keep it, unless it cannot be a peer's or is one too many. */
  #linked(peer: number, link: Link): RpcError | undefined {
    const self = this.#options.id;
    if (peer >= self) {
      return new RpcError("INVALID_ARGUMENT", `branch ${peer} must wait for branch ${self}'s link`);
    }
    if (this.#peers !== undefined && !this.#peers.has(peer)) {
      return new RpcError("INVALID_ARGUMENT", `branch ${peer} is not a peer of branch ${self}`);
    }
    if (this.#links.has(peer)) return new RpcError("INVALID_ARGUMENT", `branch ${peer} is already linked`);
    link.serve(this.#propagationHandler(peer));
    this.#links.set(peer, link);
    this.#arrivals.get(peer)?.();
    return undefined;
  }

  /** Resolves once `peer` has opened its link to this branch; rejects after `timeoutMs`. */
  #arrival(peer: number, timeoutMs: number): Promise<void> {
    if (this.#links.has(peer)) return Promise.resolve();
    const arrived = new Promise<void>((resolve) => this.#arrivals.set(peer, resolve));
    return deadline(
      arrived,
      timeoutMs,
      () => new RpcError("DEADLINE_EXCEEDED", `did not open its link within ${timeoutMs} ms`),
    ).finally(() => this.#arrivals.delete(peer));
  }

  /** Feeds `peer`'s propagations to the core; an update must come from the branch at the other end. */
  #propagationHandler(peer: number): PropagationHandler {
    return (propagation) => {
      const decoded = decodePropagation(propagation);
      if (!decoded.ok) return Promise.reject(new RpcError(decoded.refusal.code, decoded.refusal.message));
      if (decoded.value.origin !== peer) {
        const message =
          `an update from branch ${decoded.value.origin} arrived on the link with branch ${peer}`;
        return Promise.reject(new RpcError("INVALID_ARGUMENT", message));
      }
      return this.#call<number>((requestId) => ({ type: "propagation", requestId, ...decoded.value }));
    };
  }

  /**
   * Registers an inbound call, feeds it to the core, and resolves when the core answers it. The core
   * answers a request with a reply and a propagation with an ack, so `A` is the answer the call gets.
   */
  #call<A extends Answer>(input: (requestId: number) => BranchInput): Promise<A> {
    if (this.#state === undefined) {
      return Promise.reject(
        new RpcError("UNAVAILABLE", `branch ${this.#options.id} does not know its peers yet`),
      );
    }
    const requestId = this.#nextRequestId++;
    const answered = new Promise<A>((resolve, reject) =>
      this.#calls.set(requestId, { resolve: (answer) => resolve(answer as A), reject })
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
        return this.#answer(
          output.requestId,
          encodeResponse(output.interface, output.success, output.balance),
        );
      case "ack":
        return this.#answer(output.requestId, output.balance);
      case "refuse": {
        const call = this.#calls.get(output.requestId);
        this.#calls.delete(output.requestId);
        return call?.reject(new RpcError(output.refusal.code, output.refusal.message));
      }
      case "propagate":
        return this.#propagate(output.requestId, output.to, output.update);
    }
  }

  #answer(requestId: number, answer: Answer): void {
    const call = this.#calls.get(requestId);
    assert(call !== undefined, `answer for unknown call ${requestId}`);
    this.#calls.delete(requestId);
    call.resolve(answer);
  }

  #propagate(requestId: number, to: number, update: Update): void {
    const link = this.#links.get(to);
    assert(link !== undefined, `branch ${this.#options.id} has no link to peer ${to}`);
    const propagation = { origin: this.#options.id, interface: update.kind, amount: update.amount };
    link.send(propagation, this.#options.propagateDeadlineMs).then(
      () => this.#feed({ type: "propagated", requestId, peer: to, refusal: undefined }),
      (error: RpcError) => {
        const code = error.code === "UNKNOWN" ? "UNAVAILABLE" : error.code;
        this.#feed({ type: "propagated", requestId, peer: to, refusal: { code, message: error.message } });
      },
    );
  }
}
