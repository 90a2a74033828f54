// One RTCPeerConnection per member, negotiated exactly like confab's engine (perfect
// negotiation, lower member id polite), and the negotiated "chat" channel with hello/ack.
import { addChatLine, log, makeTile, memberName, notice, params, play, renderRoster, state } from "./page.js";
import { probeSignaling, relay } from "./signaling.js";
import { closeSfuMember } from "./room_media.js";

const FIRST_OFFER_GRACE_MS = 1000;
// A connection whose path went away restarts ICE after this (the polite side waits
// longer, so the two rarely restart at once), again at 4, 8 and 16 s: confab's policy.
const RESTART_AFTER_MS = { impolite: 1000, polite: 2500 };
const RESTART_RETRY_MS = [4000, 8000, 16000];
// An offer unanswered this long died with a signaling link: the impolite side then
// yields to a colliding offer instead of waiting for an answer that never comes.
const OFFER_LOST_MS = 2000;


// ---------- peers ----------

// H.264 Constrained Baseline 42e01f with packetization-mode=1 first: what confab sends.
function codecRank(c) {
  const mime = c.mimeType.toLowerCase();
  const fmtp = (c.sdpFmtpLine || "").toLowerCase();
  if (mime === "video/h264" && fmtp.includes("packetization-mode=1")) {
    if (fmtp.includes("profile-level-id=42e01f")) return 0;
    if (fmtp.includes("profile-level-id=42001f")) return 1;
    return 2;
  }
  return mime === "video/h264" ? 3 : 4;
}

export function preferCodecs(pc) {
  if (!("setCodecPreferences" in RTCRtpTransceiver.prototype)) return;
  const caps = RTCRtpReceiver.getCapabilities("video");
  if (!caps) return;
  // `video_codec=vp8` (or another name) limits what this page accepts: a way to see
  // how a call without a common video codec looks.
  const only = params.get("video_codec");
  const allowed = only
    ? caps.codecs.filter((c) => [only, "rtx"].includes(c.mimeType.split("/")[1].toLowerCase()))
    : caps.codecs;
  const codecs = allowed.slice().sort((a, b) => codecRank(a) - codecRank(b));
  for (const t of pc.getTransceivers()) {
    if (t.receiver.track.kind !== "video" || t.currentDirection === "stopped") continue;
    try {
      t.setCodecPreferences(codecs);
    } catch (e) {
      console.warn("setCodecPreferences", e);
    }
  }
}

// The browser can't choose stream ids, so the copy of a description we send names
// the screen-share stream "screen-<id>": confab peers classify tracks by that.
function signalledSdp(sdp) {
  const renamed = state.screen ? sdp.split(state.screen.id).join(`screen-${state.screen.id}`) : sdp;
  return withoutIceOfRejected(renamed);
}

// A rejected (port 0) section may carry its own ice-ufrag, and webrtc-rs 0.21 then
// refuses the whole description ("conflicting ice-ufrag values"); ICE attributes of
// a rejected section mean nothing, so they are left out of what we send.
function withoutIceOfRejected(sdp) {
  const [head, ...sections] = sdp.split(/\r\nm=/);
  return [
    head,
    ...sections.map((sec) =>
      /^\w+ 0 /.test(sec)
        ? sec.split("\r\n").filter((l) => !/^a=ice-(ufrag|pwd):/.test(l)).join("\r\n")
        : sec,
    ),
  ].join("\r\nm=");
}

function sendDescription(p) {
  const d = p.pc.localDescription;
  if (d.type === "offer") p.offerSentAt = performance.now();
  relayDescription(p, d);
}

// Our pending offer again, as it stands now (with the candidates gathered since); its
// age still counts from when it first went out.
function resendOffer(p) {
  const d = p.pc.localDescription;
  if (p.pc.signalingState !== "have-local-offer" || !d) return;
  log("offer resent", { id: p.id });
  relayDescription(p, d);
}

function relayDescription(p, d) {
  relay(p.id, { kind: "description", sdp_type: d.type, sdp: signalledSdp(d.sdp) });
}

export async function tuneSenders(pc) {
  for (const s of pc.getSenders()) {
    if (!s.track || s.track.kind !== "video") continue;
    try {
      const prm = s.getParameters();
      if (prm.degradationPreference === "maintain-resolution") continue;
      prm.degradationPreference = "maintain-resolution";
      await s.setParameters(prm);
    } catch (e) {
      console.warn("setParameters", e);
    }
  }
}

function videoSections(sdp) {
  return sdp.split(/\r?\nm=/).slice(1).map((s) => `m=${s}`);
}

// After each negotiation: which video codec won, or none in common.
function checkCodecs(p) {
  const local = p.pc.currentLocalDescription;
  const remote = p.pc.currentRemoteDescription;
  if (!local || !remote) return;
  const [offer, answer] = local.type === "answer" ? [remote.sdp, local.sdp] : [local.sdp, remote.sdp];
  const offered = videoSections(offer);
  const answered = videoSections(answer);
  let rejected = false;
  let codec = null;
  offered.forEach((o, i) => {
    const a = answered[i];
    if (!o.startsWith("m=video") || !a) return;
    // A rejected section stays rejected (port 0) in every later offer and answer.
    if (/^m=video 0 /.test(a)) {
      rejected = true;
      return;
    }
    const pt = a.split("\n")[0].trim().split(" ")[3];
    const rtpmap = a.match(new RegExp(`a=rtpmap:${pt} ([^/\\r\\n]+)`));
    if (rtpmap && !codec) codec = rtpmap[1];
  });
  p.videoCodec = codec;
  const none = rejected && !codec;
  if (none && !p.noCommonVideoCodec) {
    notice(`No common video codec with ${p.name}: no video either way`);
    log("no_common_video_codec", { id: p.id, name: p.name });
  }
  p.noCommonVideoCodec = none;
}

export function ensurePeer(id) {
  let p = state.peers.get(id);
  if (p) return p;
  const pc = new RTCPeerConnection({ iceServers: state.iceServers });
  p = {
    id,
    name: memberName(id),
    pc,
    polite: state.id < id,
    makingOffer: false,
    ignoreOffer: false,
    pendingCandidates: [],
    queue: Promise.resolve(),
    dc: null,
    heard: false,
    chatQueue: [],
    helloTimer: null,
    screenSender: null,
    tiles: {},
    videoCodec: null,
    noCommonVideoCodec: false,
    connectMs: null,
    negotiations: 0, // returns to the stable signaling state
    iceRestarts: 0, // restarts this page started
    restartTimer: null,
    restartAttempt: 0,
    offerSentAt: 0,
  };
  state.peers.set(id, p);

  pc.onnegotiationneeded = async () => {
    // Chromium gathers no ICE candidates after rolling back its *initial* offer, so
    // the polite side gives the other's first offer a moment to arrive instead of
    // colliding with it. Whatever is still needed afterwards is offered then.
    if (p.polite && !pc.currentRemoteDescription) {
      const until = performance.now() + FIRST_OFFER_GRACE_MS;
      while (performance.now() < until && !pc.currentRemoteDescription && pc.signalingState === "stable") {
        await new Promise((r) => setTimeout(r, 20));
      }
      if (pc.currentRemoteDescription || pc.signalingState !== "stable") return;
    }
    try {
      p.makingOffer = true;
      preferCodecs(pc);
      await pc.setLocalDescription();
      sendDescription(p);
    } catch (e) {
      console.warn("offer", e);
    } finally {
      p.makingOffer = false;
    }
  };
  pc.onicecandidate = ({ candidate }) => {
    if (candidate && candidate.candidate) relay(id, { kind: "candidate", candidate: candidate.toJSON() });
  };
  pc.onsignalingstatechange = () => {
    if (pc.signalingState === "stable") {
      p.negotiations += 1;
      checkCodecs(p);
      tuneSenders(pc);
    }
  };
  pc.onconnectionstatechange = () => {
    log("connection", { id, state: pc.connectionState });
    if (pc.connectionState === "connected" && p.connectMs === null) {
      p.connectMs = Math.round(performance.now() - state.joinedAt);
    }
    if (pc.connectionState === "connected") {
      clearTimeout(p.restartTimer);
      p.restartTimer = null;
      p.restartAttempt = 0;
    } else if (["disconnected", "failed"].includes(pc.connectionState) && p.connectMs !== null) {
      pathLost(p);
    }
  };
  pc.ontrack = (e) => onTrack(p, e);

  setupChat(p, pc.createDataChannel("chat", { negotiated: true, id: 0, ordered: true }));
  if (state.local) for (const t of state.local.getTracks()) pc.addTrack(t, state.local);
  if (state.screen) p.screenSender = pc.addTrack(state.screen.getVideoTracks()[0], state.screen);
  return p;
}

// The media path to `p` went away: restart ICE unless it comes back first.
export function pathLost(p) {
  probeSignaling();
  if (p.restartTimer !== null) return;
  const wait = p.restartAttempt === 0
    ? RESTART_AFTER_MS[p.polite ? "polite" : "impolite"]
    : RESTART_RETRY_MS[Math.min(p.restartAttempt - 1, RESTART_RETRY_MS.length - 1)];
  p.restartTimer = setTimeout(() => {
    p.restartTimer = null;
    if (p.pc.connectionState === "connected" || p.pc.signalingState === "closed") return;
    p.restartAttempt += 1;
    log("ice restart", { id: p.id, attempt: p.restartAttempt });
    restart(p);
    pathLost(p); // and again later if this one does not bring it back
  }, wait);
}

// An ICE restart. Only the impolite side offers one; the polite side asks for it.
// Chromium that rolls back its own ICE-restart offer for the other side's keeps
// decoding that peer's video but shows none of it, so the polite side never has such
// an offer to roll back. The impolite side's offer still unanswered went with a dead
// link, so it is rolled back first (no new offer comes while one is pending).
export function restart(p) {
  p.iceRestarts += 1;
  if (p.polite) {
    relay(p.id, { kind: "restart" });
    return;
  }
  p.queue = p.queue
    .then(async () => {
      if (p.pc.signalingState === "have-local-offer" && !p.makingOffer) {
        await p.pc.setLocalDescription({ type: "rollback" });
      }
      p.pc.restartIce(); // fires negotiationneeded: an offer with new credentials
    })
    .catch((e) => console.warn("restart", e));
}


export function onSignal(from, payload) {
  if (!state.members.has(from)) return; // relays only come from our room
  // Chat through the server: how SFU rooms talk (shown in a mesh all the same).
  if (payload && payload.kind === "chat") {
    if (typeof payload.text === "string") addChatLine(memberName(from), payload.text);
    return;
  }
  if (state.sfu) return;
  const p = ensurePeer(from);
  // One signal at a time per peer, in arrival order.
  p.queue = p.queue.then(() => handleSignal(p, payload)).catch((e) => console.warn("signal", e));
}

async function handleSignal(p, s) {
  const pc = p.pc;
  if (pc.signalingState === "closed") return;
  if (s.kind === "description") {
    const desc = { type: s.sdp_type, sdp: s.sdp };
    const collision = desc.type === "offer" && (p.makingOffer || pc.signalingState !== "stable");
    const ourOfferLost =
      pc.signalingState === "have-local-offer" && performance.now() - p.offerSentAt > OFFER_LOST_MS;
    p.ignoreOffer = !p.polite && collision && !ourOfferLost;
    if (p.ignoreOffer) {
      // While the path is down, the other side's signaling link may have died with our
      // offer under way: it would roll back for ours, but never had it. Send it again
      // (a duplicate costs one more answer, which we drop as stale).
      if (pc.connectionState !== "connected" && !p.makingOffer) resendOffer(p);
      return;
    }
    if (desc.type === "answer" && pc.signalingState !== "have-local-offer") return; // stale
    await pc.setRemoteDescription(desc); // rolls back our own offer when polite
    for (const c of p.pendingCandidates.splice(0)) await pc.addIceCandidate(c).catch(() => {});
    if (desc.type === "offer") {
      preferCodecs(pc);
      await pc.setLocalDescription();
      sendDescription(p);
    }
  } else if (s.kind === "restart") {
    // The polite side asks: our pending offer may have gone with its dead link.
    if (pc.signalingState === "have-local-offer") resendOffer(p);
    else restart(p);
  } else if (s.kind === "candidate" && s.candidate) {
    if (!pc.remoteDescription) {
      p.pendingCandidates.push(s.candidate);
      return;
    }
    try {
      await pc.addIceCandidate(s.candidate);
    } catch (e) {
      if (!p.ignoreOffer) console.warn("candidate", e);
    }
  }
}

function roleOf(track, stream) {
  if (track.kind === "audio") return "mic";
  const sid = stream ? stream.id : "";
  return track.id.includes("screen") || sid.includes("screen") ? "screen" : "camera";
}

function onTrack(p, e) {
  const role = roleOf(e.track, e.streams[0]);
  const tile = showTrack(p, role, e.track);
  if (e.streams[0]) {
    e.streams[0].onremovetrack = (ev) => {
      tile.stream.removeTrack(ev.track);
      if (tile.role === "screen" && tile.stream.getTracks().length === 0) removeTile(p, tile.role);
    };
  }
}

// A remote track into `p`'s tile for its role (audio plays from the camera tile).
export function showTrack(p, role, track) {
  const tileRole = role === "mic" ? "camera" : role;
  let tile = p.tiles[tileRole];
  if (!tile) {
    tile = { ...makeTile(p.name, false, p.id, tileRole), role: tileRole, stream: new MediaStream(), alive: true };
    tile.video.srcObject = tile.stream;
    p.tiles[tileRole] = tile;
    if (tileRole === "camera") watchFrames(p, tile);
  }
  tile.stream.addTrack(track);
  log("track", { id: p.id, role, track: track.id });
  play(tile.video);
  renderRoster();
  return tile;
}

export function removeTile(p, role) {
  const tile = p.tiles[role];
  if (!tile) return;
  tile.alive = false;
  tile.div.remove();
  delete p.tiles[role];
}

// Reads confab's barcode from every presented frame: frame ids prove order and loss.
function watchFrames(p, tile) {
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const st = {
    frames: 0,
    width: 0,
    height: 0,
    ids_read: 0,
    first_id: null,
    last_id: null,
    ids_in_order: true,
    id_gaps: 0,
    repeats: 0,
    first_frame_ms: null,
  };
  tile.frameStats = st;
  p.cameraStats = st; // kept after the tile goes
  if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
  const onFrame = (_now, meta) => {
    if (!tile.alive) return;
    const w = meta.width;
    const h = meta.height;
    if (w > 0 && h > 0) {
      if (st.first_frame_ms === null) {
        st.first_frame_ms = Math.round(performance.now() - state.joinedAt);
        log("first_frame", { id: p.id, ms: st.first_frame_ms });
      }
      st.frames += 1;
      st.width = w;
      st.height = h;
      if (canvas.width !== w || canvas.height !== h) {
        canvas.width = w;
        canvas.height = h;
      }
      const band = ConfabBarcode.bandHeight(h);
      ctx.drawImage(tile.video, 0, 0, w, h);
      const code = ConfabBarcode.readRgba(ctx.getImageData(0, 0, w, band).data, w, h);
      if (code && code.frameId === st.last_id) {
        // The callback ran late and drew the frame it had already read.
        st.repeats += 1;
      } else if (code) {
        st.ids_read += 1;
        if (st.last_id !== null) {
          if (code.frameId <= st.last_id) st.ids_in_order = false;
          else st.id_gaps += code.frameId - st.last_id - 1;
        }
        if (st.first_id === null) st.first_id = code.frameId;
        st.last_id = code.frameId;
      }
    }
    tile.video.requestVideoFrameCallback(onFrame);
  };
  tile.video.requestVideoFrameCallback(onFrame);
}

export function closePeer(id) {
  closeSfuMember(id);
  const p = state.peers.get(id);
  if (!p) return;
  state.closedPeers.push(peerSummary(p));
  clearInterval(p.helloTimer);
  clearTimeout(p.restartTimer);
  p.pc.close();
  for (const role of Object.keys(p.tiles)) removeTile(p, role);
  state.peers.delete(id);
}

export function closeAllPeers() {
  for (const id of [...state.peers.keys()]) closePeer(id);
}


export function peerSummary(p) {
  return {
    id: p.id,
    name: p.name,
    polite: p.polite,
    connection: p.pc.connectionState,
    connect_ms: p.connectMs,
    chat_open: p.heard,
    video_codec: p.videoCodec,
    no_common_video_codec: p.noCommonVideoCodec,
    negotiations: p.negotiations,
    ice_restarts: p.iceRestarts,
    camera: p.tiles.camera ? { ...p.tiles.camera.frameStats } : null,
    screen: !!p.tiles.screen,
  };
}
// ---------- chat (negotiated channel, hello/ack before any chat) ----------

function setupChat(p, dc) {
  p.dc = dc;
  const hello = () => {
    if (p.heard) {
      clearInterval(p.helloTimer);
      return;
    }
    if (dc.readyState === "open") dc.send(JSON.stringify({ type: "hello" }));
  };
  dc.onopen = () => {
    hello();
    p.helloTimer = setInterval(hello, 250);
  };
  dc.onclose = () => clearInterval(p.helloTimer);
  dc.onmessage = (e) => {
    let m;
    try {
      m = JSON.parse(e.data);
    } catch {
      return;
    }
    if (m.type === "hello") dc.send(JSON.stringify({ type: "ack" }));
    if (!p.heard) {
      p.heard = true;
      clearInterval(p.helloTimer);
      for (const text of p.chatQueue.splice(0)) dc.send(JSON.stringify({ type: "chat", text }));
    }
    if (m.type === "chat" && typeof m.text === "string") addChatLine(p.name, m.text);
  };
}

export function sendChat(text) {
  addChatLine(state.name, text, true);
  if (state.sfu) {
    for (const id of state.members.keys()) relay(id, { kind: "chat", text });
    return;
  }
  for (const p of state.peers.values()) {
    if (p.heard && p.dc.readyState === "open") p.dc.send(JSON.stringify({ type: "chat", text }));
    else p.chatQueue.push(text);
  }
}
