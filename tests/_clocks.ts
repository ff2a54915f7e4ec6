/**
 * A scripted exchange of recorded clock events, for the tests of the clocks and of what is made of them.
 *
 * @module
 */

import { LamportClock, type ProcessEvents } from "../src/lamport.ts";

const customer1 = { type: "customer", id: 1 } as const;
const branch1 = { type: "branch", id: 1 } as const;
const branch2 = { type: "branch", id: 2 } as const;
const deposit = { interface: "deposit", about: { customer: 1, request: 7 } } as const;

/** A deposit at backup 2, forwarded to primary 1 and sent back as an entry: every process's events. */
export function forwardedDeposit(): ProcessEvents[] {
  const customer = new LamportClock({ record: true });
  const backup = new LamportClock({ record: true });
  const primary = new LamportClock({ record: true });
  const request = customer.send(branch2, { message: "request", ...deposit });
  backup.receive(customer1, request, { message: "request", ...deposit });
  const forward = backup.send(branch1, { message: "forward", ...deposit });
  primary.receive(branch2, forward, { message: "forward", ...deposit });
  const entry = primary.send(branch2, { message: "entry", ...deposit });
  backup.receive(branch1, entry, { message: "entry", ...deposit });
  const ack = backup.send(branch1, { message: "ack", ...deposit });
  primary.receive(branch2, ack, { message: "ack", ...deposit });
  const answer = primary.send(branch2, { message: "answer", ...deposit });
  backup.receive(branch1, answer, { message: "answer", ...deposit });
  const reply = backup.send(customer1, { message: "reply", ...deposit });
  customer.receive(branch2, reply, { message: "reply", ...deposit });
  return [
    { process: customer1, events: customer.events() },
    { process: branch1, events: primary.events() },
    { process: branch2, events: backup.events() },
  ];
}
