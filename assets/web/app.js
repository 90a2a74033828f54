// confab browser guest: protocol v1 over /ws (signaling.js); a full mesh of
// RTCPeerConnections negotiated exactly like confab's engine (mesh.js), or in an SFU room
// the media through Janus (room_media.js, sfu.js); what the page draws (page.js). This
// module is the entry: local media, the controls, and what tests read.
import { $, makeTile, memberName, notice, params, play, renderRoster, setStatus, state } from "./page.js";
import { connect, send, sendMediaState } from "./signaling.js";
import { closeSfu, sfuMemberSummary } from "./room_media.js";
import { closeAllPeers, peerSummary, sendChat } from "./mesh.js";

// ---------- local media ----------

async function openLocalMedia() {
  state.devicesAsked = true;
  // `audio=raw` turns the browser's voice processing off (tone tests, music).
  const raw = params.get("audio") === "raw";
  const audio = raw ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : true;
  const attempts = [{ video: true, audio }, { audio }, { video: true }];
  for (const c of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch (e) {
      console.warn("getUserMedia", c, e);
    }
  }
  if (!window.isSecureContext) notice("Camera and microphone need HTTPS or localhost; joining to watch and listen only");
  else notice("No camera or microphone available; joining to watch and listen only");
  return null;
}

function showSelf() {
  if (!state.local || state.local.getVideoTracks().length === 0) return;
  if (!state.selfTile) state.selfTile = makeTile("you", true);
  state.selfTile.video.srcObject = new MediaStream(state.local.getVideoTracks());
  play(state.selfTile.video);
}

// ---------- controls ----------

function setAudioMuted(muted) {
  state.media.audio_muted = muted;
  for (const t of state.local ? state.local.getAudioTracks() : []) t.enabled = !muted;
  sendMediaState();
}

function setVideoMuted(muted) {
  state.media.video_muted = muted;
  for (const t of state.local ? state.local.getVideoTracks() : []) t.enabled = !muted;
  sendMediaState();
}

async function startShare() {
  let s;
  try {
    s = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (e) {
    notice(`Screen share refused: ${e.message}`);
    return;
  }
  const track = s.getVideoTracks()[0];
  track.contentHint = "detail";
  track.onended = stopShare;
  state.screen = s;
  for (const p of state.peers.values()) p.screenSender = p.pc.addTrack(track, s);
  if (state.sfu) state.sfu.addScreen(s);
  state.media.screen_sharing = true;
  sendMediaState();
}

function stopShare() {
  if (!state.screen) return;
  if (state.sfu) state.sfu.removeScreen();
  for (const p of state.peers.values()) {
    if (p.screenSender) p.pc.removeTrack(p.screenSender);
    p.screenSender = null;
  }
  for (const t of state.screen.getTracks()) t.stop();
  state.screen = null;
  state.media.screen_sharing = false;
  sendMediaState();
}

function leave() {
  if (state.call) send({ type: "call_hangup", call_id: state.call.call_id });
  closeSfu();
  closeAllPeers();
  const ws = state.ws;
  state.ws = null;
  state.resumeToken = null;
  if (ws) ws.close(1000, "left");
  state.members.clear();
  state.id = null;
  state.room = null;
  setStatus("left");
  $("call").classList.add("hidden");
  $("controls").classList.add("hidden");
  $("join-form").classList.remove("hidden");
}

async function join(room, name, password) {
  state.name = name;
  state.password = password || null;
  state.home = room;
  state.joinAs = room === null ? "member" : $("join-as").value;
  $("join-form").classList.add("hidden");
  // Joining to watch asks for no camera or microphone at all.
  if (!state.local && state.joinAs !== "watch") {
    setStatus("opening camera and microphone…");
    state.local = await openLocalMedia();
    const cam = state.local ? state.local.getVideoTracks()[0] : null;
    if (cam) cam.contentHint = "detail";
    state.media.has_camera = !!cam;
    state.media.has_microphone = !!(state.local && state.local.getAudioTracks().length);
    showSelf();
  }
  setStatus("connecting…");
  connect(room);
}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  join($("room").value.trim(), $("name").value.trim(), $("password").value);
});
// No room: the server's echo peer sends back what it receives.
$("test-call").onclick = () => join(null, $("name").value.trim() || "Guest", null);
$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("chat-input").value.trim();
  if (text) sendChat(text);
  $("chat-input").value = "";
});
$("mute").onclick = () => setAudioMuted(!state.media.audio_muted);
$("camera").onclick = () => setVideoMuted(!state.media.video_muted);
$("screen").onclick = () => (state.screen ? stopShare() : startShare());
$("leave").onclick = leave;
$("hangup").onclick = () => state.call && send({ type: "call_hangup", call_id: state.call.call_id });
$("answer").onclick = () => {
  if (state.incoming) send({ type: "call_accept", call_id: state.incoming });
  state.incoming = null;
  $("ring").close();
};
$("decline").onclick = () => {
  if (state.incoming) send({ type: "call_decline", call_id: state.incoming, reason: "declined" });
  state.incoming = null;
  $("ring").close();
};

// ---------- introspection (what the page knows; tests read it) ----------

async function stats() {
  const out = {};
  for (const p of state.peers.values()) out[p.id] = await statsOf(p.pc);
  // In an SFU room: our two connections to Janus.
  const sfu = state.sfu;
  if (sfu && sfu.pubPc) out["sfu-publisher"] = await statsOf(sfu.pubPc);
  if (sfu && sfu.subPc) out["sfu-subscriber"] = await statsOf(sfu.subPc);
  return out;
}

async function statsOf(pc) {
  const report = await pc.getStats();
  const codecs = new Map();
  report.forEach((s) => {
    if (s.type === "codec") codecs.set(s.id, s.mimeType);
  });
  const r = { video_in: [], audio_in: [], video_out: [], audio_out: [], rtt_ms: null };
  report.forEach((s) => {
    const codec = codecs.get(s.codecId) || null;
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
      r.rtt_ms = s.currentRoundTripTime * 1000;
    }
    if (s.type === "inbound-rtp" && s.kind === "video") {
      r.video_in.push({ codec, frames_decoded: s.framesDecoded, frame_width: s.frameWidth, frame_height: s.frameHeight, pli_count: s.pliCount, packets_lost: s.packetsLost });
    } else if (s.type === "inbound-rtp" && s.kind === "audio") {
      r.audio_in.push({ codec, packets_received: s.packetsReceived, total_audio_energy: s.totalAudioEnergy, audio_level: s.audioLevel });
    } else if (s.type === "outbound-rtp" && s.kind === "video") {
      r.video_out.push({ codec, frames_encoded: s.framesEncoded, frame_width: s.frameWidth, frame_height: s.frameHeight, encoder: s.encoderImplementation });
    } else if (s.type === "outbound-rtp" && s.kind === "audio") {
      r.audio_out.push({ codec, packets_sent: s.packetsSent });
    }
  });
  return r;
}


function snapshot() {
  return {
    id: state.id,
    room: state.room,
    name: state.name,
    media: { ...state.media },
    viewer: state.viewer,
    broadcast: state.broadcast,
    devices_asked: state.devicesAsked,
    notice: state.notice,
    notice_text: $("notice").textContent,
    room_title: $("room-title").textContent,
    roster: [...state.members.values()].map((m) => ({ id: m.id, name: m.name, state: m.state })),
    roster_text: $("roster").innerText,
    recording_mark: !$("recording-mark").classList.contains("hidden"),
    peers: [...[...state.peers.values()].map(peerSummary), ...[...state.sfuMembers.values()].map(sfuMemberSummary)],
    tiles: [...document.querySelectorAll("#tiles .tile[data-member]")].map((d) => ({
      id: d.dataset.member,
      name: memberName(d.dataset.member),
      role: d.dataset.role,
    })),
    sfu: state.sfu ? state.sfu.summary() : null,
    closed_peers: state.closedPeers.slice(),
    events: state.events.slice(),
    chat: state.chat.slice(),
  };
}

window.confab = { snapshot, stats, sendChat };

// A test call shows its round trip (the connection's, from getStats).
setInterval(async () => {
  if (!(state.room || "").startsWith("echo:")) return;
  const rtt = Object.values(await stats()).map((r) => r.rtt_ms).find((r) => r !== null);
  if (rtt !== undefined) {
    state.rttMs = rtt;
    renderRoster();
  }
}, 1000);

// A link like /?room=R&name=N fills the form; joining (camera and microphone on) takes
// a click, so a link on another site can't put anyone in a room.
const room = params.get("room");
const name = params.get("name");
// `as=watch|broadcast` preselects how to join (a link to watch a broadcast).
if (["member", "broadcast", "watch"].includes(params.get("as"))) $("join-as").value = params.get("as");
if (room) $("room").value = room;
if (name) $("name").value = name;
if (room && name) $("join-form").querySelector("button[type=submit]").focus();
