// confab browser guest, SFU rooms: media through a Janus VideoRoom (Janus API over
// WebSocket, subprotocol "janus-protocol"), as the engine does (src/call/session/sfu.rs).
// One publisher connection carries our microphone, camera and screen (we offer, Janus
// answers); one subscriber connection carries every other publisher's streams (Janus
// offers, we answer), offered again as publishers come and go. A publisher's `display`
// is its confab member id, so each remote track is handed to the page per member.
"use strict";

const ConfabSfu = (() => {
  // Janus drops a session silent for 60 s.
  const KEEPALIVE_MS = 25000;
  const REPLY_MS = 10000;
  const PLUGIN = "janus.plugin.videoroom";
  const ROOM_EXISTS = 427;

  // The VideoRoom a confab room meets in when none is named: FNV-1a of its name in 52
  // bits, never 0 (`SfuTarget::for_room`), so the page meets `confab headless --sfu URL`.
  function roomFor(name) {
    let h = 0xcbf29ce484222325n;
    for (const b of new TextEncoder().encode(name)) {
      h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
    }
    return Number(h & ((1n << 52n) - 1n)) || 1;
  }

  // One Janus session on its own WebSocket: requests matched to replies by transaction
  // (`success`/`error`, or `ack` then the `event`); anything else goes to `onNews`.
  class Janus {
    constructor(ws, apiSecret) {
      this.ws = ws;
      this.apiSecret = apiSecret;
      this.session = null;
      this.next = 1;
      this.waiting = new Map();
      this.onNews = () => {};
      this.onClosed = () => {};
      this.keepalive = null;
      ws.onmessage = (e) => {
        let m;
        try {
          m = JSON.parse(e.data);
        } catch {
          return;
        }
        this.dispatch(m);
      };
      ws.onclose = () => {
        clearInterval(this.keepalive);
        for (const w of this.waiting.values()) w.reject(new Error("the connection to Janus closed"));
        this.waiting.clear();
        this.onClosed();
      };
    }

    static open(url, apiSecret) {
      return new Promise((resolve, reject) => {
        let ws;
        try {
          ws = new WebSocket(url, "janus-protocol");
        } catch (e) {
          reject(new Error(`cannot reach Janus at ${url}: ${e.message}`));
          return;
        }
        const timer = setTimeout(() => {
          ws.close();
          reject(new Error(`cannot reach Janus at ${url}: timed out`));
        }, REPLY_MS);
        ws.onerror = () => {
          clearTimeout(timer);
          reject(new Error(`cannot reach Janus at ${url}`));
        };
        ws.onopen = async () => {
          clearTimeout(timer);
          ws.onerror = null;
          const janus = new Janus(ws, apiSecret);
          try {
            const r = await janus.call({ janus: "create" });
            janus.session = r.data.id;
            janus.keepalive = setInterval(() => {
              janus.call({ janus: "keepalive" }, true).catch(() => {});
            }, KEEPALIVE_MS);
            resolve(janus);
          } catch (e) {
            ws.close();
            reject(e);
          }
        };
      });
    }

    // `ackIsReply`: keepalive and trickle are answered by the ack itself.
    call(frame, ackIsReply = false) {
      const transaction = `t${this.next++}`;
      const msg = { ...frame, transaction };
      if (this.session !== null) msg.session_id = this.session;
      if (this.apiSecret) msg.apisecret = this.apiSecret;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiting.delete(transaction);
          reject(new Error(`no reply from Janus to ${frame.janus} ${frame.body ? frame.body.request : ""}`));
        }, REPLY_MS);
        const done = (f) => (x) => {
          clearTimeout(timer);
          this.waiting.delete(transaction);
          f(x);
        };
        this.waiting.set(transaction, { resolve: done(resolve), reject: done(reject), ackIsReply });
        if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
        else done(reject)(new Error("the connection to Janus closed"));
      });
    }

    dispatch(m) {
      const w = m.transaction && this.waiting.get(m.transaction);
      const plugin = m.plugindata ? m.plugindata.data : undefined;
      if (w) {
        if (m.janus === "ack") {
          if (w.ackIsReply) w.resolve({});
          return;
        }
        if (m.janus === "error") {
          w.reject(new Error(`Janus error ${m.error.code}: ${m.error.reason}`));
          return;
        }
        if (plugin && plugin.error_code) {
          const e = new Error(`VideoRoom error ${plugin.error_code}: ${plugin.error}`);
          e.code = plugin.error_code;
          w.reject(e);
          return;
        }
        if (m.janus === "success" || m.janus === "event") {
          w.resolve({ data: m.data, plugin, jsep: m.jsep });
          return;
        }
      }
      this.onNews(m);
    }

    async attach() {
      const r = await this.call({ janus: "attach", plugin: PLUGIN });
      const handle = r.data.id;
      return {
        id: handle,
        message: (body, jsep) => this.call({ janus: "message", handle_id: handle, body, ...(jsep ? { jsep } : {}) }),
        trickle: (candidate) => this.call({ janus: "trickle", handle_id: handle, candidate }, true),
      };
    }

    close() {
      clearInterval(this.keepalive);
      // Destroying the session detaches both handles; then the socket goes.
      this.call({ janus: "destroy" })
        .catch(() => {})
        .finally(() => this.ws.close());
    }
  }

  // One VideoRoom membership. `target`: {url, room, pin, api_secret}; `page`: what the
  // page lends it: me (member id), iceServers, local and screen (MediaStreams or null),
  // prepare(pc) and settled(pc) (codec preferences before an offer, sender settings
  // after its answer), track(member, role, track) and
  // trackGone(member, role, track), log(type, detail), error(text).
  class Room {
    constructor(target, page) {
      this.target = target;
      this.page = page;
      this.janus = null;
      this.pub = null; // publisher handle
      this.sub = null; // subscriber handle
      this.pubPc = null;
      this.subPc = null;
      this.feed = null; // our publisher id
      this.privateId = null;
      this.feeds = new Map(); // other publishers: feed id -> display (member id)
      this.subscribed = new Map(); // feed id -> Set of its mids we asked for
      this.subJoined = false;
      this.streams = new Map(); // subscription mid -> Janus's stream entry
      this.placed = new Map(); // subscription mid -> {member, role, track} handed to the page
      this.screenSender = null;
      this.closed = false;
      this.state = "connecting";
      // One thing at a time, as the engine's task: Janus news and our changes in order.
      this.queue = Promise.resolve();
    }

    run(what, f) {
      this.queue = this.queue
        .then(() => (this.closed ? undefined : f()))
        .catch((e) => {
          if (this.closed) return;
          if (this.state === "connecting") this.state = "failed";
          this.page.error(`${what}: ${e.message}`);
        });
      return this.queue;
    }

    // Session, handles, the room (created if missing), publishing, then subscribing to
    // whoever already publishes.
    start() {
      return this.run("joining the SFU", async () => {
        const t = this.target;
        this.janus = await Janus.open(t.url, t.api_secret);
        this.janus.onNews = (m) => this.run("SFU", () => this.onNews(m));
        this.janus.onClosed = () => {
          if (this.closed) return;
          this.state = "lost";
          this.page.error("lost the SFU");
        };
        this.pub = await this.janus.attach();
        try {
          // The room confab's engine makes: H.264 Constrained Baseline and Opus only.
          await this.pub.message({
            request: "create", room: t.room, publishers: 32, videocodec: "h264", audiocodec: "opus",
            h264_profile: "42e01f", bitrate: 3000000, notify_joining: false, permanent: false,
          });
          this.page.log("sfu_room_created", { room: t.room });
        } catch (e) {
          // There already (427), or made by confab's server, which may forbid creating.
          if (e.code !== ROOM_EXISTS) console.warn("VideoRoom create", e);
        }
        this.sub = await this.janus.attach();
        const join = { request: "join", ptype: "publisher", room: t.room, display: this.page.me };
        if (t.pin) join.pin = t.pin;
        const r = await this.pub.message(join);
        if (r.plugin.videoroom !== "joined") throw new Error(`join: ${JSON.stringify(r.plugin)}`);
        this.feed = r.plugin.id;
        this.privateId = r.plugin.private_id ?? null;
        this.page.log("sfu_joined", { room: t.room, feed: this.feed });
        this.state = "joined";
        this.publishConnection();
        await this.subscribe(r.plugin.publishers || []);
      });
    }

    publishConnection() {
      const pc = new RTCPeerConnection({ iceServers: this.page.iceServers, bundlePolicy: "max-bundle" });
      this.pubPc = pc;
      pc.onicecandidate = ({ candidate }) => {
        const c = candidate && candidate.candidate ? candidate.toJSON() : { completed: true };
        this.pub.trickle(c).catch(() => {});
      };
      pc.onnegotiationneeded = () => this.run("publishing to the SFU", () => this.offer());
      pc.onconnectionstatechange = () => this.page.log("sfu_connection", { which: "publisher", state: pc.connectionState });
      const local = this.page.local;
      // Audio first, as the engine does.
      if (local) for (const t of [...local.getAudioTracks(), ...local.getVideoTracks()]) pc.addTrack(t, local);
      const screen = this.page.screen;
      if (screen) this.screenSender = pc.addTrack(screen.getVideoTracks()[0], screen);
    }

    // Our offer goes with `configure`; Janus's answer comes in its event. Each m-section
    // is described, so subscribers tell a screen from a camera.
    async offer() {
      const pc = this.pubPc;
      if (!pc || pc.signalingState !== "stable") return;
      this.page.prepare(pc);
      await pc.setLocalDescription(await pc.createOffer());
      const screenTrack = this.screenSender && this.screenSender.track;
      const descriptions = pc
        .getTransceivers()
        .filter((t) => t.mid !== null && t.sender.track)
        .map((t) => ({
          mid: t.mid,
          description: t.sender.track.kind === "audio" ? "mic" : t.sender.track === screenTrack ? "screen" : "camera",
        }));
      const body = { request: "configure", audio: true, video: true };
      if (descriptions.length) body.descriptions = descriptions;
      const r = await this.pub.message(body, { type: "offer", sdp: pc.localDescription.sdp });
      if (!r.jsep || r.jsep.type !== "answer") throw new Error(`configure: no answer in ${JSON.stringify(r.plugin)}`);
      await pc.setRemoteDescription(r.jsep);
      this.page.settled(pc);
      this.page.log("sfu_published", { streams: descriptions.map((d) => d.description) });
    }

    // Other publishers' streams onto the subscriber connection: the first join it,
    // later ones are subscribed to (a stream a publisher adds, a screen, too). A stream
    // a publisher stopped is listed `disabled`: its track goes here.
    async subscribe(publishers) {
      const fresh = [];
      for (const p of publishers) {
        const display = p.display || "";
        if (p.id === this.feed || display === this.page.me) continue;
        this.feeds.set(p.id, display);
        const live = new Set((p.streams || []).filter((s) => !s.disabled && s.type !== "data").map((s) => s.mid));
        const mids = this.subscribed.get(p.id);
        if (!mids) {
          fresh.push({ feed: p.id });
          this.subscribed.set(p.id, live);
          continue;
        }
        for (const mid of [...mids]) if (!live.has(mid)) mids.delete(mid);
        for (const mid of live) {
          if (!mids.has(mid)) {
            mids.add(mid);
            fresh.push({ feed: p.id, mid });
          }
        }
      }
      this.place();
      if (fresh.length === 0) return;
      let body;
      if (this.subJoined) {
        body = { request: "subscribe", streams: fresh };
      } else {
        this.subJoined = true;
        body = { request: "join", ptype: "subscriber", room: this.target.room, streams: fresh };
        if (this.privateId !== null) body.private_id = this.privateId;
        if (this.target.pin) body.pin = this.target.pin;
      }
      const r = await this.sub.message(body);
      await this.onSubscriberEvent(r.plugin, r.jsep);
    }

    // `attached`/`updated`: the stream list, and an offer we answer with `start`.
    async onSubscriberEvent(data, jsep) {
      if (data && Array.isArray(data.streams)) {
        this.streams = new Map(data.streams.map((s) => [s.mid, s]));
        for (const s of data.streams) {
          // A feed whose `publishers` event has not come yet.
          if (s.feed_id && s.feed_display && !this.feeds.has(s.feed_id)) this.feeds.set(s.feed_id, s.feed_display);
        }
      }
      if (!jsep || jsep.type !== "offer") return;
      if (!this.subPc) {
        const pc = new RTCPeerConnection({ iceServers: this.page.iceServers, bundlePolicy: "max-bundle" });
        this.subPc = pc;
        pc.onicecandidate = ({ candidate }) => {
          const c = candidate && candidate.candidate ? candidate.toJSON() : { completed: true };
          this.sub.trickle(c).catch(() => {});
        };
        pc.onconnectionstatechange = () => this.page.log("sfu_connection", { which: "subscriber", state: pc.connectionState });
      }
      const pc = this.subPc;
      await pc.setRemoteDescription(jsep);
      await pc.setLocalDescription(await pc.createAnswer());
      await this.sub.message({ request: "start" }, { type: "answer", sdp: pc.localDescription.sdp });
      this.place();
    }

    // Hands each receiving m-section's track to the member whose stream it carries now,
    // and takes it back from whoever had it: Janus gives a departed publisher's sections
    // to the next one, and lists sections it no longer feeds as inactive.
    place() {
      const pc = this.subPc;
      if (!pc) return;
      for (const t of pc.getTransceivers()) {
        if (t.mid === null) continue;
        const s = this.streams.get(t.mid);
        const track = t.receiver.track;
        let want = null;
        if (s && s.type !== "data" && s.active !== false && s.feed_id && t.currentDirection !== "inactive") {
          const member = this.feeds.get(s.feed_id);
          const mids = this.subscribed.get(s.feed_id);
          const wanted = mids && (s.feed_mid === undefined || mids.has(s.feed_mid));
          if (member && wanted) {
            const role = s.type === "audio" ? "mic" : s.feed_description === "screen" ? "screen" : "camera";
            want = { member, role, track, feed: s.feed_id };
          }
        }
        const had = this.placed.get(t.mid);
        if (had && want && had.member === want.member && had.role === want.role && had.track === want.track) continue;
        if (had) {
          this.placed.delete(t.mid);
          this.page.trackGone(had.member, had.role, had.track);
        }
        if (want) {
          this.placed.set(t.mid, want);
          this.page.track(want.member, want.role, track);
        }
      }
    }

    async onNews(m) {
      if (m.janus !== "event") {
        if (m.janus === "hangup" || m.janus === "webrtcup") this.page.log(`sfu_${m.janus}`, { handle: m.sender });
        return;
      }
      const data = m.plugindata ? m.plugindata.data : {};
      if (this.sub && m.sender === this.sub.id) {
        await this.onSubscriberEvent(data, m.jsep);
        return;
      }
      if (!this.pub || m.sender !== this.pub.id) return;
      if (Array.isArray(data.publishers)) {
        await this.subscribe(data.publishers);
        return;
      }
      // A feed left or stopped publishing: its tracks go at once (Janus does not always
      // offer again, so the sections may stay open and silent until it does).
      const gone = typeof data.unpublished === "number" ? data.unpublished : typeof data.leaving === "number" ? data.leaving : null;
      if (gone !== null && this.feeds.has(gone)) {
        this.page.log("sfu_feed_gone", { feed: gone, id: this.feeds.get(gone) });
        this.feeds.delete(gone);
        this.subscribed.delete(gone);
        this.place();
      }
    }

    addScreen(stream) {
      if (!this.pubPc || this.screenSender) return;
      this.screenSender = this.pubPc.addTrack(stream.getVideoTracks()[0], stream);
    }

    removeScreen() {
      if (!this.pubPc || !this.screenSender) return;
      this.pubPc.removeTrack(this.screenSender);
      this.screenSender = null;
    }

    // Leaves the room and ends the session; the page's tiles of this room go.
    close() {
      if (this.closed) return;
      this.closed = true;
      this.state = "closed";
      for (const [mid, had] of this.placed) {
        this.placed.delete(mid);
        this.page.trackGone(had.member, had.role, had.track);
      }
      for (const pc of [this.pubPc, this.subPc]) if (pc) pc.close();
      if (this.janus) {
        const janus = this.janus;
        const leave = this.pub ? this.pub.message({ request: "leave" }).catch(() => {}) : Promise.resolve();
        leave.finally(() => janus.close());
      }
    }

    summary() {
      return {
        state: this.state,
        url: this.target.url,
        room: this.target.room,
        feed: this.feed,
        publisher: this.pubPc ? this.pubPc.connectionState : null,
        subscriber: this.subPc ? this.subPc.connectionState : null,
        feeds: [...this.feeds.entries()].map(([feed, id]) => ({ feed, id })),
      };
    }
  }

  const same = (a, b) =>
    !!a && !!b && a.url === b.url && a.room === b.room && (a.pin || null) === (b.pin || null);

  return { Room, roomFor, same };
})();
