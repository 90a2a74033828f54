// confab browser guest: protocol v1 over /ws, a full mesh of RTCPeerConnections
// negotiated exactly like confab's engine (perfect negotiation, lower member id
// polite), the negotiated "chat" channel with hello/ack, and media-state updates. In an
// SFU room the media goes through Janus instead (sfu.js) and chat through the server.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const FIRST_OFFER_GRACE_MS = 1000;
  // A connection whose path went away restarts ICE after this (the polite side waits
  // longer, so the two rarely restart at once), again at 4, 8 and 16 s: confab's policy.
  const RESTART_AFTER_MS = { impolite: 1000, polite: 2500 };
  const RESTART_RETRY_MS = [4000, 8000, 16000];
  // A lost path may mean a dead signaling link too (our address changed): a ping must
  // come back within this, or the link is replaced (and resumed).
  const PROBE_MS = 1500;
  // An offer unanswered this long died with a signaling link: the impolite side then
  // yields to a colliding offer instead of waiting for an answer that never comes.
  const OFFER_LOST_MS = 2000;

  const state = {
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
  function setStatus(...parts) {
    $("status").replaceChildren(...parts);
  }

  function notice(text) {
    state.notice = text;
    $("notice").textContent = text;
  }

  function log(type, detail) {
    state.events.push({ t_ms: Math.round(performance.now() - state.joinedAt), type, ...detail });
  }

  function memberName(id) {
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

  function renderRoster() {
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
        : `Room ${state.room}`;
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
  function nameElement(name) {
    const el = document.createElement("bdi");
    el.textContent = name;
    return el;
  }

  function addChatLine(from, text, mine) {
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

  function makeTile(title, muted, member = null, role = null) {
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

  function play(video) {
    video.play().catch(() => {
      // Autoplay with sound needs a user gesture when the page joined from a link.
      notice("Click anywhere to start playback");
      document.addEventListener("click", () => {
        for (const v of document.querySelectorAll("video")) v.play().catch(() => {});
        notice("");
      }, { once: true });
    });
  }

  // ---------- local media ----------

  async function openLocalMedia() {
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

  // ---------- signaling ----------

  function send(msg) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
  }

  function relay(to, payload) {
    send({ type: "relay", to, payload });
  }

  function sendJoin(room) {
    const msg = { type: "join", room, name: state.name, state: state.media };
    if (state.password) msg.password = state.password;
    send(msg);
  }

  function sendMediaState() {
    send({ type: "media_state", state: state.media });
    renderRoster();
  }

  function connect(room) {
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
      if (!known && !state.sfu) ensurePeer(member.id);
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
        if (!state.sfu) ensurePeer(m.member.id);
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

  function invite(id) {
    send({ type: "call_invite", to: id, metadata: JSON.stringify({ from: state.name }) });
  }

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
  function roomMedia(media, room) {
    if (media && media.mode === "sfu") return media;
    return linkedSfu(room) || { mode: "mesh" };
  }

  // Tears down what carried the room's media and sets up what carries it now.
  function applyMedia(media) {
    const sfu = media.mode === "sfu" ? media : null;
    if (sfu && state.sfu && ConfabSfu.same(state.sfu.target, sfu)) return;
    if (sfu || state.sfu) {
      log("room_media", sfu ? { mode: "sfu", url: sfu.url, room: sfu.room } : { mode: "mesh" });
      closeSfu();
      closeAllPeers();
    }
    if (!sfu) {
      for (const id of state.members.keys()) ensurePeer(id);
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

  function closeSfu() {
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

  function closeSfuMember(id) {
    const v = state.sfuMembers.get(id);
    if (!v) return;
    for (const role of Object.keys(v.tiles)) removeTile(v, role);
    state.closedPeers.push(sfuMemberSummary(v));
    state.sfuMembers.delete(id);
  }

  function sfuMemberSummary(v) {
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

  function preferCodecs(pc) {
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
    relay(p.id, { kind: "description", sdp_type: d.type, sdp: signalledSdp(d.sdp) });
  }

  async function tuneSenders(pc) {
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

  function ensurePeer(id) {
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
  function pathLost(p) {
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

  // An ICE restart; an offer of ours still unanswered went with a dead link, so it is
  // rolled back first (no new offer comes while one is pending).
  function restart(p) {
    p.iceRestarts += 1;
    p.queue = p.queue
      .then(async () => {
        if (p.pc.signalingState === "have-local-offer" && !p.makingOffer) {
          await p.pc.setLocalDescription({ type: "rollback" });
        }
        p.pc.restartIce(); // fires negotiationneeded: an offer with new credentials
      })
      .catch((e) => console.warn("restart", e));
  }

  // Pings the server; no answer in time and the link is replaced (then resumed).
  function probeSignaling() {
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

  function onSignal(from, payload) {
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
      if (p.ignoreOffer) return;
      if (desc.type === "answer" && pc.signalingState !== "have-local-offer") return; // stale
      await pc.setRemoteDescription(desc); // rolls back our own offer when polite
      for (const c of p.pendingCandidates.splice(0)) await pc.addIceCandidate(c).catch(() => {});
      if (desc.type === "offer") {
        preferCodecs(pc);
        await pc.setLocalDescription();
        sendDescription(p);
      }
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
  function showTrack(p, role, track) {
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

  function removeTile(p, role) {
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

  function closePeer(id) {
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

  function closeAllPeers() {
    for (const id of [...state.peers.keys()]) closePeer(id);
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

  function sendChat(text) {
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
    $("join-form").classList.add("hidden");
    setStatus("opening camera and microphone…");
    if (!state.local) {
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

  function peerSummary(p) {
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

  function snapshot() {
    return {
      id: state.id,
      room: state.room,
      name: state.name,
      media: { ...state.media },
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
  if (room) $("room").value = room;
  if (name) $("name").value = name;
  if (room && name) $("join-form").querySelector("button[type=submit]").focus();
})();
