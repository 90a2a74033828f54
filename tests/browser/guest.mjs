// One browser guest for tests/browser.rs: Debian's Chromium (playwright-core) opens the
// page confab serves, joins, performs timed actions through the page's own controls,
// and prints one JSON line: what the page saw (window.confab.snapshot) and getStats.
//
// The page is opened with a link that names room and name, and joins when the guest
// clicks Join (what it showed before the click is reported as `before_click`).
//
// Usage: node guest.mjs '<json>' with
//   {url, user_data_dir, video (y4m), audio (wav), seconds, actions: [{at, do, text?}],
//    trust_spki? (base64 SHA-256 of a test certificate's key, for an https url),
//    button? (what to click instead of Join, e.g. "#test-call")}
// `at` is seconds after the page joined; `do` is mute | unmute | camera | screen | answer | decline | hangup | chat |
// snapshot | close.
//
// Debugging: with CONFAB_GUEST_DEBUG=<dir>, every RTCPeerConnection call and event (SDPs
// and candidates included) and the transport/candidate stats are recorded and the whole
// result is written to <dir>/guest-<pid>.json.
import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2]);
const executablePath = cfg.chromium || "/usr/bin/chromium";

const args = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  "--allow-loopback-in-peer-connection",
  "--autoplay-policy=no-user-gesture-required",
  `--use-file-for-fake-video-capture=${cfg.video}`,
  `--use-file-for-fake-audio-capture=${cfg.audio}`,
];
// An HTTPS page with a test certificate: trust that key only.
if (cfg.trust_spki) args.push(`--ignore-certificate-errors-spki-list=${cfg.trust_spki}`);

const sleepUntil = (t) => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

const started = Date.now();
const ctx = await chromium.launchPersistentContext(cfg.user_data_dir, {
  executablePath,
  headless: true,
  args,
});
const page = ctx.pages()[0] || (await ctx.newPage());
const DEBUG_DIR = process.env.CONFAB_GUEST_DEBUG;
const DEBUG = !!DEBUG_DIR;
if (DEBUG) {
  await page.addInitScript(() => {
    const t0 = performance.now();
    const log = (window.__dbg = []);
    const rec = (what, x) => log.push({ t: Math.round(performance.now() - t0), what, ...(x || {}) });
    const P = RTCPeerConnection.prototype;
    for (const m of ["setLocalDescription", "setRemoteDescription", "addIceCandidate", "createOffer", "createAnswer"]) {
      const orig = P[m];
      P[m] = async function (...a) {
        rec(m, { arg: a[0] ? JSON.parse(JSON.stringify(a[0])) : null, sig: this.signalingState });
        try {
          const r = await orig.apply(this, a);
          rec(`${m} ok`, { sig: this.signalingState, local: m === "setLocalDescription" ? this.localDescription?.sdp : undefined });
          return r;
        } catch (e) {
          rec(`${m} FAILED`, { err: String(e) });
          throw e;
        }
      };
    }
    const Orig = window.RTCPeerConnection;
    window.RTCPeerConnection = function (...a) {
      const pc = new Orig(...a);
      for (const ev of ["signalingstatechange", "iceconnectionstatechange", "icegatheringstatechange", "connectionstatechange", "negotiationneeded"]) {
        pc.addEventListener(ev, () => rec(ev, { sig: pc.signalingState, ice: pc.iceConnectionState, gather: pc.iceGatheringState, conn: pc.connectionState }));
      }
      pc.addEventListener("icecandidate", (e) => rec("icecandidate", { c: e.candidate && e.candidate.toJSON() }));
      window.__pcs = (window.__pcs || []).concat([pc]);
      return pc;
    };
    window.RTCPeerConnection.prototype = P;
    Object.setPrototypeOf(window.RTCPeerConnection, Orig);
  });
}
const errors = [];
const consoleLines = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("console", (m) => {
  if (m.type() === "error" || m.type() === "warning") consoleLines.push(m.text());
});

const capture = async () => ({
  snapshot: await page.evaluate(() => window.confab.snapshot()),
  stats: await page.evaluate(() => window.confab.stats()),
  ...(DEBUG
    ? {
        debug: await page.evaluate(async () => {
          const stats = [];
          for (const pc of window.__pcs || []) {
            const r = await pc.getStats();
            r.forEach((s) => {
              if (["transport", "candidate-pair", "local-candidate", "remote-candidate"].includes(s.type)) stats.push(s);
            });
          }
          return { log: window.__dbg, stats };
        }),
      }
    : {}),
});

// `watch: {peer, first, more}`: instead of the schedule, print lines `{"event": …}`:
// `seeing` when the peer's frame ids reach `first`; after the test writes the line `mark`
// (it has done its damage to the network), `back` at the first new id and `more` when
// `more` ids came after that; then finish when the test writes `done`. A test acts
// whenever this machine got the pages there. `seconds` after joining the page stops
// waiting and finishes with what it saw.
const lastIdFrom = (name) =>
  page.evaluate((n) => {
    const s = window.confab.snapshot();
    const p = [...s.peers, ...(s.closed_peers || [])].find((x) => x.name === n);
    return (p && p.camera && p.camera.last_id) || 0;
  }, name);
async function watchPeer(w, deadline) {
  const input = createInterface({ input: process.stdin });
  const lines = input[Symbol.asyncIterator]();
  const told = async () => {
    let timer;
    const late = new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))));
    await Promise.race([lines.next(), late]);
    clearTimeout(timer);
  };
  // The page has no event to await from here: look every 100 ms.
  const until = async (event, reached, extra) => {
    let id;
    while (!reached((id = await lastIdFrom(w.peer)))) {
      if (Date.now() >= deadline) return null;
      await sleepUntil(Date.now() + 100);
    }
    process.stdout.write(`${JSON.stringify({ event, peer: w.peer, id, ...extra })}\n`);
    return id;
  };
  try {
    if ((await until("seeing", (id) => id >= w.first)) === null) return;
    await told();
    // Counted from the first new id: the sender's ids went on during an outage.
    const marked = await lastIdFrom(w.peer);
    const from = await until("back", (id) => id > marked, { marked });
    if (from === null || (await until("more", (id) => id >= from + w.more, { from })) === null) return;
    await told();
  } finally {
    input.close();
  }
}

const result = { launch_ms: 0, join_ms: 0, before_click: null, snapshots: [], final: null, errors, console: consoleLines };
try {
  const launched = Date.now();
  result.launch_ms = launched - started;
  await page.goto(cfg.url);
  // A link only fills the form: the page must be waiting for the click, not joined.
  await page.waitForFunction(() => window.confab, null, { timeout: 40000 });
  result.before_click = await page.evaluate(() => ({
    joined: window.confab.snapshot().id !== null,
    form_shown: !document.getElementById("join-form").classList.contains("hidden"),
    room: document.getElementById("room").value,
    name: document.getElementById("name").value,
  }));
  // `button`: another way in, e.g. "#test-call".
  await page.click(cfg.button || "#join-form button[type=submit]");
  await page.waitForFunction(() => window.confab && window.confab.snapshot().id, null, { timeout: 20000 });
  const joined = Date.now();
  result.join_ms = joined - launched;
  let closed = false;
  if (cfg.watch) {
    await watchPeer(cfg.watch, joined + cfg.seconds * 1000);
    result.final = await capture();
    closed = true;
  }
  for (const a of closed ? [] : [...(cfg.actions || [])].sort((x, y) => x.at - y.at)) {
    await sleepUntil(joined + a.at * 1000);
    switch (a.do) {
      case "mute":
      case "unmute":
        await page.click("#mute");
        break;
      case "camera":
        await page.click("#camera");
        break;
      case "answer":
      case "decline":
        // Waits for the ringing dialog, then presses its button.
        await page.waitForSelector("#ring[open]", { timeout: 15000 });
        await page.click(`#${a.do}`);
        break;
      case "hangup":
        await page.click("#hangup");
        break;
      case "screen":
        await page.click("#screen");
        break;
      case "chat":
        await page.fill("#chat-input", a.text);
        await page.click("#chat-form button");
        break;
      case "snapshot":
        result.snapshots.push(await capture());
        break;
      case "close":
        result.final = await capture();
        await page.close();
        closed = true;
        break;
      default:
        throw new Error(`unknown action ${a.do}`);
    }
    if (closed) break;
  }
  if (!closed) {
    await sleepUntil(joined + cfg.seconds * 1000);
    result.final = await capture();
  }
} catch (e) {
  result.errors.push(`guest.mjs: ${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
} finally {
  await ctx.close().catch(() => {});
}
if (DEBUG) {
  writeFileSync(`${DEBUG_DIR}/guest-${process.pid}.json`, JSON.stringify(result, null, 1));
  for (const c of [...result.snapshots, result.final]) if (c) delete c.debug;
}
process.stdout.write(`${JSON.stringify(result)}\n`);
