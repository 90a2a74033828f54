"""An aiortc peer that speaks confab's signaling protocol (docs/PROTOCOL.md).

Written as a user of another WebRTC stack would, from the document alone. aiortc cannot
roll back a local offer, so this peer follows the checklist's advice for such peers:
it answers every offer (confab always offers to a peer it meets), and offers only with
--offer-if-impolite when it is the impolite side (the higher id), which never rolls
back: it ignores a colliding offer. --want-impolite (for tests) joins again on a new
connection until its id is the higher one.

It sends a video file (a y4m) and a sound file (a wav), and writes what it receives:
each video track's decoded luma planes to OUT/video-<track id>.luma (per frame:
b"LUMA", width and height as u32 LE, microseconds since the remote peer was seen as
u64 LE, then width*height bytes) and the decoded audio to OUT/audio.wav. Stdout gets one JSON line
{"event": "joined", ...} on the welcome, and one result line at the end.
"""

import argparse
import asyncio
import json
import struct
import sys
import time
import wave

import aioice.ice
import websockets
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.sdp import candidate_from_sdp

T0 = time.monotonic()


def log(*args):
    print(f"[aiortc {time.monotonic() - T0:7.3f}]", *args, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj), flush=True)


class Peer:
    def __init__(self, args, ws):
        self.args = args
        self.ws = ws
        self.me = None
        self.remote = None  # member id of the one peer we talk to
        self.seen = None  # monotonic time the remote peer became known
        self.joined = None  # monotonic time the join went out
        self.pc = None
        self.pending_candidates = []
        self.ice_servers = []
        self.result = {
            "id": None,
            "remote": None,
            "attempts": 1,
            "offered": False,
            "offers_answered": 0,
            "offers_ignored": 0,
            "candidates_added": 0,
            "connected_ms": None,
            "connected_after_join_ms": None,
            "first_frame_ms": None,
            "frames": {},
            "audio_frames": 0,
            "tracks": [],
            "chat": [],
            "chat_sent": False,
            "remote_left": None,
            "errors": [],
        }
        self.heard = False
        self.recorders = []

    def ms_since(self, start):
        return round((time.monotonic() - start) * 1000)

    async def send(self, msg):
        await self.ws.send(json.dumps(msg))

    async def relay(self, payload):
        await self.send({"type": "relay", "to": self.remote, "payload": payload})

    # --- the peer connection -------------------------------------------------------

    def meet(self, member):
        if self.remote is not None:
            log("ignoring another member", member["id"])
            return
        self.remote = member["id"]
        self.result["remote"] = member["id"]
        self.seen = time.monotonic()
        log("peer", member["id"], member["name"])
        # The welcome's ICE servers, even when there are none: aiortc would otherwise
        # add a public STUN server of its own. max-bundle, as confab bundles everything:
        # with aiortc's default ("balanced") a second video section in the first offer
        # (a screen share) is left on a transport aiortc then discards, and gets nothing.
        config = RTCConfiguration(
            iceServers=self.ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )
        pc = RTCPeerConnection(config)
        self.pc = pc
        video = MediaPlayer(self.args.video)
        audio = MediaPlayer(self.args.audio, loop=True)
        pc.addTrack(audio.audio)
        pc.addTrack(video.video)
        chan = pc.createDataChannel("chat", negotiated=True, id=0, ordered=True)
        self.chan = chan
        # confab's rule: the lower id (string order) is polite.
        if self.args.offer_if_impolite and self.me > self.remote:
            asyncio.ensure_future(self.offer())

        @pc.on("connectionstatechange")
        async def on_state():
            log("connection", pc.connectionState)
            if pc.connectionState == "connected" and self.result["connected_ms"] is None:
                self.result["connected_ms"] = self.ms_since(self.seen)
                self.result["connected_after_join_ms"] = self.ms_since(self.joined)

        @pc.on("track")
        def on_track(track):
            log("track", track.kind, track.id)
            self.result["tracks"].append({"kind": track.kind, "id": track.id})
            record = self.record_video if track.kind == "video" else self.record_audio
            self.recorders.append(asyncio.ensure_future(record(track)))

        @chan.on("open")
        def on_open():
            log("data channel open")
            asyncio.ensure_future(self.greet())

        @chan.on("message")
        def on_message(msg):
            if not isinstance(msg, str):
                self.result["errors"].append("binary data-channel message")
                return
            m = json.loads(msg)
            self.heard = True
            if m.get("type") == "hello":
                chan.send(json.dumps({"type": "ack"}))
            elif m.get("type") == "chat":
                self.result["chat"].append(m.get("text"))
            self.maybe_chat()

    async def greet(self):
        # hello on open and every 250 ms until the other side is heard (PROTOCOL.md).
        while not self.heard and self.chan.readyState == "open":
            self.chan.send(json.dumps({"type": "hello"}))
            await asyncio.sleep(0.25)
        self.maybe_chat()

    def maybe_chat(self):
        if self.heard and self.args.chat and not self.result["chat_sent"]:
            self.chan.send(json.dumps({"type": "chat", "text": self.args.chat}))
            self.result["chat_sent"] = True

    async def offer(self):
        try:
            await self.pc.setLocalDescription(await self.pc.createOffer())
            local = self.pc.localDescription
            log("offer:\n" + local.sdp)
            await self.relay({"kind": "description", "sdp_type": "offer", "sdp": local.sdp})
            self.result["offered"] = True
        except Exception as e:  # a task of its own: report it, or it would vanish
            self.result["errors"].append(f"offer: {e!r}")

    async def set_remote(self, sdp_type, sdp):
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=sdp_type))
        for c in self.pending_candidates:
            await self.add_candidate(c)
        self.pending_candidates = []

    async def on_signal(self, sender, payload):
        if sender != self.remote:
            return
        kind = payload.get("kind")
        if kind == "description":
            sdp_type, sdp = payload["sdp_type"], payload["sdp"]
            log(f"remote {sdp_type}:\n" + sdp)
            if sdp_type == "answer" and self.pc.signalingState == "have-local-offer":
                await self.set_remote("answer", sdp)
                return
            if sdp_type != "offer":
                self.result["errors"].append(f"unexpected {sdp_type}")
                return
            if self.pc.signalingState == "have-local-offer":
                # Only the impolite side offers here: it ignores the collision.
                self.result["offers_ignored"] += 1
                return
            await self.set_remote("offer", sdp)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            # aiortc gathers before it returns: the answer carries our candidates, and
            # it does not trickle.
            local = self.pc.localDescription
            log("answer:\n" + local.sdp)
            await self.relay({"kind": "description", "sdp_type": local.type, "sdp": local.sdp})
            self.result["offers_answered"] += 1
            log("answered offer", self.result["offers_answered"])
        elif kind == "candidate":
            if self.pc.remoteDescription is None:
                self.pending_candidates.append(payload["candidate"])
            else:
                await self.add_candidate(payload["candidate"])

    async def add_candidate(self, init):
        text = init.get("candidate", "")
        if not text:
            return  # end-of-candidates: confab sends none, aiortc needs none
        cand = candidate_from_sdp(text.split(":", 1)[1])
        # Everything is bundled: the candidate belongs to the first section.
        cand.sdpMid = init.get("sdpMid")
        cand.sdpMLineIndex = init.get("sdpMLineIndex")
        if cand.sdpMid is None and cand.sdpMLineIndex is None:
            cand.sdpMLineIndex = 0
        await self.pc.addIceCandidate(cand)
        self.result["candidates_added"] += 1

    # --- what we receive -----------------------------------------------------------

    async def record_video(self, track):
        self.result["frames"][track.id] = 0
        with open(f"{self.args.out}/video-{track.id}.luma", "wb") as f:
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                if self.result["first_frame_ms"] is None:
                    self.result["first_frame_ms"] = self.ms_since(self.seen)
                    log("first frame", frame.width, frame.height)
                yuv = frame.reformat(format="yuv420p")
                plane = yuv.planes[0]
                w, h, stride = yuv.width, yuv.height, plane.line_size
                data = bytes(plane)
                luma = b"".join(data[y * stride : y * stride + w] for y in range(h))
                us = int((time.monotonic() - self.seen) * 1e6)
                f.write(b"LUMA" + struct.pack("<IIQ", w, h, us) + luma)
                self.result["frames"][track.id] += 1

    async def record_audio(self, track):
        out = None
        try:
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                channels = len(frame.layout.channels)
                if out is None:
                    out = wave.open(f"{self.args.out}/audio.wav", "wb")
                    out.setnchannels(channels)
                    out.setsampwidth(2)
                    out.setframerate(frame.sample_rate)
                s16 = frame if frame.format.name == "s16" else frame.reformat(format="s16")
                out.writeframes(bytes(s16.planes[0])[: s16.samples * channels * 2])
                self.result["audio_frames"] += 1
        finally:
            if out is not None:
                out.close()

    async def inbound_stats(self):
        # What arrived per track, to tell a lost stream from one that did not decode.
        packets = {}
        for t in self.pc.getTransceivers():
            track = t.receiver.track
            if track is None:
                continue
            for s in (await t.receiver.getStats()).values():
                if s.type == "inbound-rtp":
                    packets[track.id] = s.packetsReceived
        self.result["packets"] = packets

    # --- signaling -----------------------------------------------------------------

    async def run(self):
        self.joined = time.monotonic()
        await self.send({"type": "join", "room": self.args.room, "name": self.args.name})
        async for text in self.ws:
            msg = json.loads(text)
            t = msg.get("type")
            if t == "welcome":
                self.me = msg["id"]
                self.result["id"] = self.me
                self.ice_servers = [
                    RTCIceServer(s["urls"], s.get("username"), s.get("credential"))
                    for s in msg["ice_servers"]
                ]
                members = [m["id"] for m in msg["members"]]
                if self.args.want_impolite and members and self.me < members[0]:
                    log("polite as", self.me, "joining again")
                    return "again"
                emit({"event": "joined", "id": self.me})
                log("welcome", self.me, [m["id"] for m in msg["members"]])
                for m in msg["members"]:
                    self.meet(m)
            elif t == "peer_joined":
                self.meet(msg["member"])
            elif t == "relay":
                try:
                    await self.on_signal(msg["from"], msg["payload"])
                except Exception as e:  # keep going: report it
                    log("signal failed", repr(e))
                    self.result["errors"].append(f"signal: {e!r}")
            elif t == "peer_left":
                if msg["id"] == self.remote:
                    self.result["remote_left"] = msg["reason"]
            elif t == "error":
                self.result["errors"].append(f"server: {msg}")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--room", required=True)
    ap.add_argument("--name", default="aio")
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--chat")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--loopback", action="store_true", help="gather 127.0.0.1 only")
    ap.add_argument("--offer-if-impolite", action="store_true")
    ap.add_argument("--want-impolite", action="store_true")
    args = ap.parse_args()
    if args.loopback:
        # aioice leaves 127.0.0.1 out on purpose; a loopback-only test needs it.
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: (
            ["127.0.0.1"] if use_ipv4 else []
        )
    attempts = 0
    while True:
        attempts += 1
        result = await session(args)
        if result is not None:
            break
    result["attempts"] = attempts
    emit(result)


async def session(args):
    """One connection: its result, or None when it is to be tried again."""
    async with websockets.connect(args.server) as ws:
        peer = Peer(args, ws)
        task = asyncio.ensure_future(peer.run())
        try:
            await asyncio.wait_for(asyncio.shield(task), args.seconds)
        except asyncio.TimeoutError:
            pass
        if task.done() and not task.exception() and task.result() == "again":
            return None
        if task.done() and task.exception():
            peer.result["errors"].append(f"signaling: {task.exception()!r}")
        task.cancel()
        if peer.pc is not None:
            await peer.inbound_stats()
            await peer.pc.close()
        # The recorders see their tracks end and close their files; a track that never
        # carried a packet never ends (aiortc started no decoder for it).
        if peer.recorders:
            _, stuck = await asyncio.wait(peer.recorders, timeout=5)
            for t in stuck:
                t.cancel()
    return peer.result


if __name__ == "__main__":
    asyncio.run(main())
