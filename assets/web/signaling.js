// Protocol v1 over /ws: joining, resuming, what the server says, rooms and calls.
import { $, bothWatch, log, memberName, nameElement, notice, renderRoster, setStatus, state } from "./page.js";
import { applyMedia, closeSfu, roomMedia } from "./room_media.js";
import { closeAllPeers, closePeer, ensurePeer, onSignal, pathLost, restart } from "./mesh.js";

// A lost path may mean a dead signaling link too (our address changed): a ping must
// come back within this, or the link is replaced (and resumed).
const PROBE_MS = 1500;

// ---------- signaling ----------

export function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

export function relay(to, payload) {
  send({ type: "relay", to, payload });
}

function sendJoin(room) {
  const msg = { type: "join", room, name: state.name, state: state.media };
  if (state.password) msg.password = state.password;
  // A new room becomes a broadcast we present; an existing one we join presenting.
  if (state.joinAs === "broadcast") Object.assign(msg, { broadcast: true, role: "presenter" });
  if (state.joinAs === "watch") msg.role = "viewer";
  send(msg);
}

export function sendMediaState() {
  send({ type: "media_state", state: state.media });
  renderRoster();
}

export function connect(room) {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(`${scheme}${location.host}/ws`);
  state.ws = ws;
  // After a lost link: the same member again if the server still keeps it.
  ws.onopen = () => {
    if (state.resumeToken) send({ type: "resume", token: state.resumeToken });
    // A test call: the server answers with the echo's room and its key.
    else if (room === null) send({ type: "test_call" });
    else sendJoin(room);
  };
  ws.onmessage = (e) => {
    // Anything from the server shows the link is alive.
    if (state.probe) {
      clearTimeout(state.probe.timer);
      state.probe = null;
    }
    let m;
    try {
      m = JSON.parse(e.data);
    } catch {
      return;
    }
    onServer(m);
  };
  ws.onclose = () => {
    if (state.ws !== ws) return; // we closed it (leave) or replaced it
    log("disconnected", {});
    if (!state.resumeToken) {
      setStatus("disconnected from the server");
      closeAllPeers();
      return;
    }
    // Media flows peer to peer: the calls go on while we reconnect and resume.
    setStatus("reconnecting to the server…");
    const delay = state.reconnectDelay;
    state.reconnectDelay = Math.min(delay * 2, 8000);
    setTimeout(() => {
      if (state.ws === ws) connect(state.room || state.home);
    }, delay);
  };
}

// The room as a resumed welcome says it is now: who left meanwhile goes, who came
// gets a connection, everyone else never noticed.
function onResumed(m) {
  const present = new Set(m.members.map((x) => x.id));
  for (const id of [...state.members.keys()]) {
    if (!present.has(id)) {
      closePeer(id);
      state.members.delete(id);
    }
  }
  for (const member of m.members) {
    const known = state.members.has(member.id);
    state.members.set(member.id, member);
    if (!known && !state.sfu && !bothWatch(member.id)) ensurePeer(member.id);
  }
  state.order = [...m.members.map((x) => x.id), m.id];
  state.resumeToken = m.resume_token || null;
  state.reconnectDelay = 500;
  log("resumed", { id: m.id });
  // An offer sent while the link was dead is lost: restart again where the path is down.
  for (const p of state.peers.values()) {
    if (p.connectMs !== null && p.pc.connectionState !== "connected") {
      clearTimeout(p.restartTimer);
      p.restartTimer = null;
      p.restartAttempt = Math.max(p.restartAttempt, 1);
      log("ice restart", { id: p.id, attempt: p.restartAttempt, after: "resume" });
      restart(p);
      pathLost(p);
    }
  }
  applyMedia(roomMedia(m.media, m.room));
  setStatus("in ", nameElement(m.room), " as ", nameElement(state.name));
  renderRoster();
}

const ROOM_EVENTS = ["peer_joined", "peer_left", "relay", "media_state", "room_media"];

function onServer(m) {
  // Between leaving one room and the next welcome, the old room's events are stale.
  if (state.pendingJoin !== null && ROOM_EVENTS.includes(m.type)) return;
  switch (m.type) {
    case "welcome":
      if (m.resumed && m.id === state.id) {
        onResumed(m);
        break;
      }
      // A new member: connections made as the old one are void.
      if (state.id && m.id !== state.id) {
        closeSfu();
        closeAllPeers();
        state.members.clear();
      }
      state.resumeToken = m.resume_token || null;
      state.reconnectDelay = 500;
      state.pendingJoin = null;
      state.id = m.id;
      state.room = m.room;
      // The room may have given us a suffixed name ("Ann (2)") if ours was taken.
      if (m.name) state.name = m.name;
      state.order = [...m.members.map((x) => x.id), m.id];
      state.joinedAt = performance.now();
      state.iceServers = m.ice_servers || [];
      // Told to watch (a broadcast): nothing is sent, the camera and microphone close.
      state.viewer = !!m.viewer;
      state.broadcast = !!m.broadcast;
      if (state.viewer && state.local) {
        for (const t of state.local.getTracks()) t.stop();
        state.local = null;
        if (state.selfTile) state.selfTile.video.srcObject = null;
      }
      if (state.viewer) notice("Watching: you send nothing");
      // A viewer has nothing to mute or share.
      for (const b of ["mute", "camera", "screen"]) $(b).classList.toggle("hidden", state.viewer);
      if (!state.home) state.home = m.room;
      log("joined", { room: m.room, id: m.id });
      setStatus("in ", nameElement(m.room), " as ", nameElement(state.name));
      $("join-form").classList.add("hidden");
      $("call").classList.remove("hidden");
      $("controls").classList.remove("hidden");
      for (const member of m.members) state.members.set(member.id, member);
      applyMedia(roomMedia(m.media, m.room));
      renderRoster();
      break;
    case "peer_joined":
      state.members.set(m.member.id, m.member);
      state.order.push(m.member.id);
      log("peer_joined", { id: m.member.id, name: m.member.name });
      if (!state.sfu && !bothWatch(m.member.id)) ensurePeer(m.member.id);
      renderRoster();
      break;
    case "peer_left":
      log("peer_left", { id: m.id, name: memberName(m.id), reason: m.reason });
      closePeer(m.id);
      state.members.delete(m.id);
      state.order = state.order.filter((id) => id !== m.id);
      renderRoster();
      break;
    case "relay":
      onSignal(m.from, m.payload);
      break;
    case "room_media":
      applyMedia(roomMedia(m.media, state.room));
      renderRoster();
      break;
    case "media_state": {
      const member = state.members.get(m.id);
      if (member) member.state = m.state;
      log("media_state", { id: m.id, name: memberName(m.id), state: m.state });
      renderRoster();
      break;
    }
    case "call_incoming":
      log("call_incoming", { call_id: m.call_id, from: m.from, from_name: m.from_name });
      state.incoming = m.call_id;
      $("ring-text").replaceChildren(nameElement(m.from_name), " is calling you");
      if (!$("ring").open) $("ring").showModal();
      break;
    case "call_ringing":
      log("call_ringing", { call_id: m.call_id, to: m.to });
      notice(`Ringing ${memberName(m.to)}…`);
      break;
    case "call_accepted":
      log("call_accepted", { call_id: m.call_id, room: m.room, peer: m.peer });
      notice("");
      state.call = { call_id: m.call_id, room: m.room, peer: m.peer };
      switchRoom(m.room);
      break;
    case "call_ended":
      log("call_ended", { call_id: m.call_id, reason: m.reason });
      if (state.incoming === m.call_id) {
        state.incoming = null;
        if ($("ring").open) $("ring").close();
      }
      notice(`Call ended: ${m.reason}${m.detail ? ` (${m.detail})` : ""}`);
      if (state.call && state.call.call_id === m.call_id) {
        state.call = null;
        if (state.room !== state.home) switchRoom(state.home);
      }
      renderRoster();
      break;
    case "test_call":
      state.password = m.password;
      state.home = m.room;
      sendJoin(m.room);
      break;
    case "left":
      state.room = null;
      if (state.pendingJoin) sendJoin(state.pendingJoin);
      break;
    case "error":
      log("error", { code: m.code, message: m.message });
      notice(`Server: ${m.message}`);
      if (m.request === "join") state.pendingJoin = null;
      if (m.request === "resume") {
        // The server no longer keeps us (grace over, or it restarted): join again.
        state.resumeToken = null;
        sendJoin(state.room || state.home);
        break;
      }
      if ((m.request === "join" || m.request === "test_call") && !state.room) {
        $("join-form").classList.remove("hidden");
        if (m.code === "wrong_password") $("password").focus();
      }
      break;
    default:
      break;
  }
}

function switchRoom(room) {
  closeSfu();
  closeAllPeers();
  state.members.clear();
  state.pendingJoin = room;
  send({ type: "leave" });
  renderRoster();
}

export function invite(id) {
  send({ type: "call_invite", to: id, metadata: JSON.stringify({ from: state.name }) });
}

// Pings the server; no answer in time and the link is replaced (then resumed).
export function probeSignaling() {
  const ws = state.ws;
  if (!ws || state.probe) return;
  const nonce = Math.floor(Math.random() * 1e9);
  state.probe = {
    nonce,
    timer: setTimeout(() => {
      state.probe = null;
      if (state.ws === ws) {
        log("signaling probe lost", {});
        ws.close(); // onclose reconnects and resumes
      }
    }, PROBE_MS),
  };
  send({ type: "ping", nonce });
}
