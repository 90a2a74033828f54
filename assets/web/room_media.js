// A room's media: a mesh (mesh.js) or a Janus VideoRoom (sfu.js), and switching between them.
import { bothWatch, log, memberName, notice, params, renderRoster, state } from "./page.js";
import { closeAllPeers, ensurePeer, preferCodecs, removeTile, showTrack, tuneSenders } from "./mesh.js";

// ---------- room media: a mesh, or a Janus VideoRoom (sfu.js) ----------

// `?sfu=ws://HOST:PORT[&sfu_room=N]` takes the room's media through that Janus (as
// `confab headless --sfu`) while the server says mesh. Only a Janus on the page's own
// host: a link must not send someone's camera elsewhere.
function linkedSfu(room) {
  const url = params.get("sfu");
  if (!url || !room || room.startsWith("call:") || room.startsWith("echo:")) return null;
  let u;
  try {
    u = new URL(url);
  } catch {
    u = null;
  }
  if (!u || !["ws:", "wss:"].includes(u.protocol) || u.hostname !== location.hostname) {
    notice(`Ignoring sfu=${url}: only a Janus on ${location.hostname} (ws:// or wss://)`);
    return null;
  }
  const n = Number(params.get("sfu_room"));
  return { mode: "sfu", url, room: Number.isSafeInteger(n) && n > 0 ? n : ConfabSfu.roomFor(room) };
}

// The server's word (welcome `media`, `room_media`) first; the link's when it says mesh.
export function roomMedia(media, room) {
  if (media && media.mode === "sfu") return media;
  return linkedSfu(room) || { mode: "mesh" };
}

// Tears down what carried the room's media and sets up what carries it now.
export function applyMedia(media) {
  const sfu = media.mode === "sfu" ? media : null;
  if (sfu && state.sfu && ConfabSfu.same(state.sfu.target, sfu)) return;
  if (sfu || state.sfu) {
    log("room_media", sfu ? { mode: "sfu", url: sfu.url, room: sfu.room } : { mode: "mesh" });
    closeSfu();
    closeAllPeers();
  }
  if (!sfu) {
    for (const id of state.members.keys()) if (!bothWatch(id)) ensurePeer(id);
    return;
  }
  state.sfu = new ConfabSfu.Room(sfu, {
    me: state.id,
    iceServers: state.iceServers,
    get local() {
      return state.local;
    },
    get screen() {
      return state.screen;
    },
    prepare: preferCodecs,
    settled: tuneSenders,
    track: sfuTrack,
    trackGone: sfuTrackGone,
    log,
    error: (text) => {
      log("sfu_error", { message: text });
      notice(`SFU: ${text}`);
    },
  });
  state.sfu.start();
}

export function closeSfu() {
  if (!state.sfu) return;
  state.sfu.close();
  state.sfu = null;
  for (const id of [...state.sfuMembers.keys()]) closeSfuMember(id);
}

function sfuTrack(id, role, track) {
  let v = state.sfuMembers.get(id);
  if (!v) {
    v = { id, name: memberName(id), tiles: {}, connectMs: null, cameraStats: null };
    state.sfuMembers.set(id, v);
  }
  if (v.connectMs === null) v.connectMs = Math.round(performance.now() - state.joinedAt);
  showTrack(v, role, track);
}

function sfuTrackGone(id, role, track) {
  const v = state.sfuMembers.get(id);
  const tile = v && v.tiles[role === "mic" ? "camera" : role];
  if (!tile) return;
  tile.stream.removeTrack(track);
  log("track_removed", { id, role });
  if (tile.stream.getTracks().length === 0) removeTile(v, tile.role);
  renderRoster();
}

export function closeSfuMember(id) {
  const v = state.sfuMembers.get(id);
  if (!v) return;
  for (const role of Object.keys(v.tiles)) removeTile(v, role);
  state.closedPeers.push(sfuMemberSummary(v));
  state.sfuMembers.delete(id);
}

export function sfuMemberSummary(v) {
  return {
    id: v.id,
    name: v.name,
    sfu: true,
    connection: state.sfu && state.sfu.subPc ? state.sfu.subPc.connectionState : "closed",
    connect_ms: v.connectMs,
    video_codec: null,
    no_common_video_codec: false,
    camera: v.cameraStats ? { ...v.cameraStats } : null,
    screen: !!v.tiles.screen,
  };
}
