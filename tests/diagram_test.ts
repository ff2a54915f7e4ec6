/**
 * The space-time diagram: what the page holds (pure), and what a person sees of a real run's page in
 * headless Chromium (Debian's `chromium`, which .ci/run installs): lanes and arrows in the rendered page,
 * and a screenshot that is not blank.
 */

import { assertEquals, assertMatch, assertOk } from "./_assert.ts";
import { makeInput, runEntry, tempDir } from "./_processes.ts";
import { decodePng } from "./_png.ts";
import { renderDiagram } from "../src/diagram.ts";
import { LamportClock, type ProcessEvents } from "../src/lamport.ts";

const customer1 = { type: "customer", id: 1 } as const;
const branch1 = { type: "branch", id: 1 } as const;
const withdrawal = { interface: "withdraw", about: { customer: 1, request: 5 } } as const;

/** A withdrawal at branch 1 that is answered, and an entry branch 1 sent that nobody received. */
function withdrawalAtPrimary(): ProcessEvents[] {
  const customer = new LamportClock({ record: true });
  const branch = new LamportClock({ record: true });
  branch.receive(customer1, customer.send(branch1, { message: "request", ...withdrawal }), {
    message: "request",
    ...withdrawal,
  });
  branch.send({ type: "branch", id: 2 }, { message: "entry", ...withdrawal });
  customer.receive(branch1, branch.send(customer1, { message: "reply", ...withdrawal }), {
    message: "reply",
    ...withdrawal,
  });
  return [{ process: customer1, events: customer.events() }, { process: branch1, events: branch.events() }];
}

const count = (html: string, pattern: RegExp) => html.match(new RegExp(pattern, "g"))?.length ?? 0;

Deno.test("renderDiagram() draws a lane per process and an arrow per message, received or not", () => {
  const html = renderDiagram(withdrawalAtPrimary(), { title: "a <run>" });
  assertEquals(count(html, /<g class="lane"/), 2);
  assertEquals(count(html, /<g class="arrow /), 3);
  assertEquals(count(html, /<g class="arrow entry unreceived"/), 1);
  assertEquals(count(html, /<circle class="event (send|recv)"/), 5);
  assertMatch(html, /<title>a &lt;run&gt;<\/title>/);
  // Self-contained: nothing to fetch, nothing to run.
  assertEquals(count(html, /<script|<link|src=|href=/), 0);
});

Deno.test("renderDiagram() marks a failed operation on its reply, with its balance on hover", () => {
  const failed = renderDiagram(withdrawalAtPrimary(), {
    title: "run",
    outcomes: new Map([["1/5", { success: false, balance: 40 }]]),
  });
  assertEquals(count(failed, /<g class="arrow reply failed"/), 1);
  assertMatch(failed, /FAILED, balance 40/);
  const succeeded = renderDiagram(withdrawalAtPrimary(), {
    title: "run",
    outcomes: new Map([["1/5", { success: true, balance: 40 }]]),
  });
  assertEquals(count(succeeded, /class="arrow[^"]*failed"/), 0);
});

Deno.test("renderDiagram() keeps 50 branches usable: lanes at least 26 px wide, no labels on arrows", () => {
  const clock = new LamportClock({ record: true });
  for (let id = 2; id <= 50; id++) clock.send({ type: "branch", id }, { message: "entry", ...withdrawal });
  const branches = Array.from({ length: 50 }, (_, index) => ({
    process: { type: "branch", id: index + 1 } as const,
    events: index === 0 ? clock.events() : [],
  }));
  const html = renderDiagram(branches, { title: "fifty" });
  assertEquals(count(html, /<g class="lane"/), 50);
  assertEquals(count(html, /<g class="arrow /), 49);
  assertOk(!html.slice(html.indexOf('<svg class="run"')).includes("<text"), "arrows labelled at 50 lanes");
  assertMatch(html, /<svg class="run" width="1300"/);
});

/**
 * Debian's Chromium, if installed. .ci/run installs it and sets BANK_REQUIRE_CHROMIUM=1, so that in CI the
 * test runs (and fails without it) rather than being ignored.
 */
const CHROMIUM = await chromiumRuns();
const REQUIRED = Deno.env.get("BANK_REQUIRE_CHROMIUM") === "1";
const CHROMIUM_TIMEOUT_MS = 60_000;

/**
 * Whether `chromium --version` runs. Deno 2.9.3's `Command.output()` throws at once, rather than
 * rejecting, when the program is not on the PATH; in an async function both become a rejection.
 */
async function chromiumRuns(): Promise<boolean> {
  try {
    const result = await new Deno.Command("chromium", { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return result.success;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Runs headless Chromium on `url` with `args`; returns its stdout. */
async function chromium(dir: string, args: readonly string[], url: string): Promise<string> {
  const result = await new Deno.Command("chromium", {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--hide-scrollbars",
      `--user-data-dir=${dir}/chromium-profile`,
      ...args,
      url,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHROMIUM_TIMEOUT_MS),
  }).output();
  assertOk(result.success, `chromium failed: ${new TextDecoder().decode(result.stderr)}`);
  return new TextDecoder().decode(result.stdout);
}

Deno.test(
  "main.ts --diagram draws the example run so that Chromium shows its lanes and arrows",
  { ignore: !CHROMIUM && !REQUIRED },
  async () => {
    await using dir = await tempDir();
    // The example, and a withdrawal that fails: the balance is 400 + 170 - 70 = 500 by then.
    const example = JSON.parse(await Deno.readTextFile("Input.json")) as { type: string }[];
    const customers = [
      ...example.filter((entry) => entry.type === "customer"),
      { id: 1, type: "customer", events: [{ id: 6, interface: "withdraw", money: 900 }] },
    ];
    await Deno.writeTextFile(`${dir.path}/in.json`, makeInput(3, 400, customers));
    const run = await runEntry("main.ts", ["in.json", "--diagram", "run.html"], dir.path);
    assertEquals(run.code, 0, run.stderr);
    const url = `file://${dir.path}/run.html`;
    const dom = await chromium(dir.path, ["--dump-dom"], url);
    assertEquals(count(dom, /<g class="lane"/), 6);
    // At least (more after a retry): 6 requests and replies, one of them failed; a forward and an answer
    // for each of the 2 updates made at backups, each update's entry to both backups, and an ack each.
    assertOk(count(dom, /<g class="arrow request/) >= 6);
    assertOk(count(dom, /<g class="arrow reply/) >= 6);
    assertOk(count(dom, /<g class="arrow reply failed"/) >= 1);
    const arrows = count(dom, /<g class="arrow /);
    assertOk(arrows >= 6 * 2 + 2 * 2 + 2 * 2 + 2, `${arrows} arrows`);
    // An arrow per send, each ending at its receive, if it was received: only the last acks may still have
    // been on their way to the primary when its events were read.
    assertEquals(arrows, count(dom, /<circle class="event send"/));
    const unreceived = count(dom, /<g class="arrow [a-z]+[^"]* unreceived"/);
    assertEquals(count(dom, /<g class="arrow ack unreceived"/), unreceived);
    assertEquals(arrows - unreceived, count(dom, /<circle class="event recv"/));

    await chromium(dir.path, ["--window-size=1000,800", `--screenshot=${dir.path}/run.png`], url);
    const image = await decodePng(await Deno.readFile(`${dir.path}/run.png`));
    assertEquals([image.width, image.height], [1000, 800]);
    let inked = 0;
    const colours = new Set<number>();
    for (let at = 0; at < image.pixels.length; at += image.channels) {
      const [r, g, b] = [image.pixels[at], image.pixels[at + 1], image.pixels[at + 2]] as number[] as [
        number,
        number,
        number,
      ];
      if (r + g + b < 3 * 235) inked++;
      colours.add((r >> 4) << 8 | (g >> 4) << 4 | (b >> 4));
    }
    // Lanes, arrows, dots and text, in several colours: not a blank page, nor one flat colour.
    const share = inked / (image.width * image.height);
    assertOk(share > 0.01 && share < 0.5, `inked share ${share}`);
    assertOk(colours.size >= 8, `${colours.size} colours`);
  },
);

Deno.test("main.ts --diagram naming a directory is refused in one line, before any process starts", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(
    `${dir.path}/in.json`,
    makeInput(2, 100, [{ id: 1, type: "customer", events: [] }]),
  );
  await Deno.writeTextFile(`${dir.path}/output.txt`, "earlier");
  for (const path of ["out/", ""]) {
    const run = await runEntry("main.ts", ["in.json", "--diagram", path], dir.path);
    assertEquals(run.code, 2, path);
    assertMatch(run.stderr, /^[^\n]*: cannot write diagram: names no file\n$/);
    assertEquals(await Deno.readTextFile(`${dir.path}/output.txt`), "earlier");
  }
  assertEquals([...Deno.readDirSync(dir.path)].map((entry) => entry.name).sort(), ["in.json", "output.txt"]);
});
