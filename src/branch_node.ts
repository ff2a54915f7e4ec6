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
import { decodePropagation, decodeRequest, encodeResponse } from "./wire_codec.ts";
import {
  BranchClient,
  type BranchServer,
  type Outgoing,
  type ReplicationStream,
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
  readonly #clients = new Map<number, BranchClient>();
  readonly #streams = new Map<number, ReplicationStream>();
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
      propagate: (propagation) => {
        const decoded = decodePropagation(propagation);
        if (!decoded.ok) return Promise.reject(new RpcError(decoded.refusal.code, decoded.refusal.message));
        if (!node.#clients.has(decoded.value.origin)) {
          return Promise.reject(
            new RpcError("INVALID_ARGUMENT", `branch ${decoded.value.origin} is not a peer`),
          );
        }
        return node.#call<number>((requestId) => ({
          type: "propagation",
          requestId,
          ...decoded.value,
        }));
      },
    });
    return node;
  }

  /** The port the branch listens on. */
  get port(): number {
    assert(this.#server !== undefined, "branch server not started");
    return this.#server.port;
  }

  /**
   * Gives the branch its peers (id to host:port), opens a replication stream to each, and once every
   * peer has accepted its stream, starts serving customers. Once only. Rejects with RpcError naming the
   * peer that did not accept within `timeoutMs`.
   */
  async configure(peers: ReadonlyMap<number, string>, timeoutMs: number): Promise<void> {
    assert(this.#state === undefined, `branch ${this.#options.id} configured twice`);
    assert(this.#server !== undefined, "branch server not started");
    for (const [id, address] of peers) {
      const client = new BranchClient(address);
      this.#clients.set(id, client);
      this.#streams.set(id, client.replicate());
    }
    await Promise.all(
      [...this.#streams].map(([id, stream]) =>
        stream.accepted(timeoutMs).catch((error: RpcError) => {
          throw new RpcError(error.code, `branch ${id}: ${error.message}`);
        })
      ),
    );
    this.#state = initialState(this.#options.id, this.#options.balance, [...peers.keys()]);
    this.#server.setServing(true);
  }

  /**
   * Stops: ends its replication streams, stops serving (calls in progress, and peers' streams into this
   * branch, get up to `graceMs` to finish), and closes every client.
   */
  async stop(graceMs: number): Promise<void> {
    for (const stream of this.#streams.values()) stream.end();
    await this.#server?.shutdown(graceMs);
    for (const client of this.#clients.values()) client.close();
    this.#streams.clear();
    this.#clients.clear();
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
    const stream = this.#streams.get(to);
    assert(stream !== undefined, `branch ${this.#options.id} has no stream to peer ${to}`);
    const propagation = { origin: this.#options.id, interface: update.kind, amount: update.amount };
    stream.send(propagation, this.#options.propagateDeadlineMs).then(
      () => this.#feed({ type: "propagated", requestId, peer: to, refusal: undefined }),
      (error: RpcError) => {
        const code = error.code === "UNKNOWN" ? "UNAVAILABLE" : error.code;
        this.#feed({ type: "propagated", requestId, peer: to, refusal: { code, message: error.message } });
      },
    );
  }
}
