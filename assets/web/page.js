// The page's state, its constants and what draws it: shared by the modules.
import { invite } from "./signaling.js";

export const $ = (id) => document.getElementById(id);
export const params = new URLSearchParams(location.search);
export const state = {
  ws: null,
  id: null,
  room: null,
  name: null,
  password: null,
  probe: null, // an unanswered ping: {nonce, timer}
  home: null, // the room to return to after a ringing call
  joinedAt: performance.now(),
  resumeToken: null, // from the last welcome: takes us back after a lost link
  reconnectDelay: 500,
  iceServers: [],
  local: null, // camera + microphone
  viewer: false, // we only watch (a broadcast): nothing is sent
  joinAs: "member", // or "broadcast" (start one and present) or "watch"
  devicesAsked: false, // getUserMedia was called (never when joining to watch)
  broadcast: false, // the room is a broadcast
  screen: null, // display capture
  media: {
    audio_muted: false,
    video_muted: false,
    has_camera: false,
    has_microphone: false,
    screen_sharing: false,
  },
  members: new Map(), // id -> {id, name, state}
  order: [], // member ids, longest present first (ours included): order[0] owns the room
  peers: new Map(), // id -> peer record (mesh)
  sfu: null, // ConfabSfu.Room while the room's media goes through Janus
  sfuMembers: new Map(), // id -> {id, name, tiles, ...}: members seen through the SFU
  events: [], // presence, media-state and call events, for people and tests
  chat: [],
  call: null, // {call_id, room, peer}
  incoming: null,
  pendingJoin: null,
  notice: "",
  closedPeers: [], // what departed peers delivered, kept for the record
};

// ---------- UI helpers ----------

// Text, or parts where names come as their own isolates (see nameElement).
export function setStatus(...parts) {
  $("status").replaceChildren(...parts);
}

export function notice(text) {
  state.notice = text;
  $("notice").textContent = text;
}

export function log(type, detail) {
  state.events.push({ t_ms: Math.round(performance.now() - state.joinedAt), type, ...detail });
}

// Two viewers of a broadcast have nothing to send each other: no connection.
export function bothWatch(id) {
  const member = state.members.get(id);
  return state.viewer && !!(member && member.viewer);
}

export function memberName(id) {
  const m = state.members.get(id);
  return m ? m.name : id;
}

function describeState(s) {
  const parts = [];
  if (!s) return "";
  if (s.audio_muted || !s.has_microphone) parts.push("mic off");
  if (s.video_muted || !s.has_camera) parts.push("camera off");
  if (s.screen_sharing) parts.push("sharing");
  if (s.recording) parts.push("recording");
  return parts.join(", ");
}

// A broadcast's title says how many watch (presenters see their audience); a viewer
// sees that it watches.
function audience() {
  if (!state.broadcast) return "";
  const watching = [...state.members.values()].filter((m) => m.viewer).length + (state.viewer ? 1 : 0);
  return state.viewer ? ` · broadcast · watching (${watching} watching)` : ` · broadcast · ${watching} watching`;
}

export function renderRoster() {
  const ul = $("roster");
  ul.replaceChildren();
  const badge = (text) => {
    const b = document.createElement("span");
    b.className = "badge";
    b.textContent = text;
    return b;
  };
  const row = (id, name, s, callable) => {
    const li = document.createElement("li");
    li.dataset.id = id;
    const st = document.createElement("span");
    st.className = "state";
    st.textContent = describeState(s);
    li.append(nameElement(name));
    // Marks are elements beside the name, never text a name could imitate.
    if (id === state.id) li.append(badge("you"));
    if (id === state.order[0]) li.append(badge("owner"));
    li.append(st);
    if (callable && !state.call && !(state.room || "").startsWith("echo:")) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Call";
      b.onclick = () => invite(id);
      li.append(b);
    }
    ul.append(li);
  };
  if (state.id) row(state.id, state.name, state.media, false);
  for (const m of state.members.values()) row(m.id, m.name, m.state, true);
  $("room-title").textContent = !state.room
    ? ""
    : state.room.startsWith("echo:")
      ? `Test call: you see and hear yourself, through the server's echo and back${state.rttMs === undefined ? "" : ` (round trip ${Math.round(state.rttMs)} ms)`}`
      : `Room ${state.room}${audience()}`;
  // Everyone sees that the call is recorded (a member's media state says so).
  const recording = [...state.members.values()].some((m) => m.state && m.state.recording);
  $("recording-mark").classList.toggle("hidden", !recording);
  $("mute").textContent = state.media.audio_muted ? "Unmute" : "Mute";
  $("mute").classList.toggle("off", state.media.audio_muted);
  $("camera").textContent = state.media.video_muted ? "Camera on" : "Camera off";
  $("camera").classList.toggle("off", state.media.video_muted);
  $("screen").textContent = state.screen ? "Stop sharing" : "Share screen";
  $("hangup").classList.toggle("hidden", !state.call);
  for (const p of [...state.peers.values(), ...state.sfuMembers.values()]) {
    for (const tile of Object.values(p.tiles)) {
      const what = tile.role === "screen" ? "(screen)" : describeState(state.members.get(p.id)?.state);
      tile.label.replaceChildren(nameElement(p.name), document.createTextNode(` ${what}`));
    }
  }
}

// A name in its own bidi isolate: right-to-left letters in one name can't reorder the
// text around it (the server already refuses direction controls).
export function nameElement(name) {
  const el = document.createElement("bdi");
  el.textContent = name;
  return el;
}

export function addChatLine(from, text, mine) {
  state.chat.push({ from, text });
  const li = document.createElement("li");
  const b = document.createElement("b");
  b.append(nameElement(from));
  if (mine) b.append(" (you)");
  b.append(": ");
  const body = document.createElement("bdi");
  body.textContent = text;
  li.append(b, body);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
}

export function makeTile(title, muted, member = null, role = null) {
  const div = document.createElement("div");
  div.className = "tile";
  if (member) div.dataset.member = member;
  if (role) div.dataset.role = role;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = muted;
  const label = document.createElement("span");
  label.className = "label";
  label.append(nameElement(title));
  div.append(video, label);
  $("tiles").append(div);
  return { div, video, label };
}

export function play(video) {
  video.play().catch(() => {
    // Autoplay with sound needs a user gesture when the page joined from a link.
    notice("Click anywhere to start playback");
    document.addEventListener("click", () => {
      for (const v of document.querySelectorAll("video")) v.play().catch(() => {});
      notice("");
    }, { once: true });
  });
}
