import { assertEquals, assertOk } from "./_assert.ts";
import { type Entry, initialState } from "../src/branch_core.ts";
import { Holding } from "../src/holding.ts";

const entry = (position: number): Entry => ({
  view: 0,
  position,
  update: { kind: "deposit", amount: 1 },
  commit: 0,
});
/** The primary of five branches: a majority is it and two backups. */
const primary = initialState(1, 400, { peers: [2, 3, 4, 5] });

Deno.test("Holding sends a batch at once to the quorum's backups and holds it for the others", () => {
  const holding = new Holding();
  const first = holding.ship(primary, [2, 3, 4, 5], [entry(1)]);
  assertEquals([...first.keys()], [2, 3]);
  assertEquals(holding.heldFor(), [4, 5]);
  // A backup held for gets what it missed, then the new entry, in order, once it is sent to at once.
  holding.asked(4);
  const second = holding.ship(primary, [2, 3, 4, 5], [entry(2)]);
  assertEquals(second.get(4)?.map(({ position }) => position), [1, 2]);
  assertEquals(holding.take(5)?.map(({ position }) => position), [1, 2]);
  assertEquals(holding.take(5), undefined, "taken once");
  assertOk(!holding.holding);
});

Deno.test("Holding stops sending at once when a backup's requests are answered, and forgets a broken link's", () => {
  const holding = new Holding();
  holding.asked(5);
  holding.asked(5);
  holding.answered(5);
  assertEquals([...holding.ship(primary, [2, 3, 4, 5], [entry(1)]).keys()], [2, 3, 5], "one still asking");
  holding.answered(5);
  assertEquals([...holding.ship(primary, [2, 3, 4, 5], [entry(2)]).keys()], [2, 3]);
  assertEquals(holding.heldFor(), [4, 5]);
  holding.forget(4);
  assertEquals(holding.heldFor(), [5]);
  holding.clear();
  assertOk(!holding.holding);
});
