//! SFU mode: media through a Janus VideoRoom instead of a mesh. One publisher
//! connection carries our tracks (we offer, Janus answers); one subscriber connection
//! carries every other publisher's streams (Janus offers, we answer), offered again as
//! publishers come and go. Each publisher's `display` is its confab member id, so a
//! remote track is tied to a member (Janus's stream list gives mid -> feed, the offer
//! gives mid -> track id) and the decode -> sink path and the events stay per member.
//! Presence stays with confab's signaling: `PeerJoined`/`PeerLeft` come from there.

use std::collections::{HashMap, HashSet};

use tokio::sync::mpsc;

use super::*;
use crate::call::error::CallError;
use crate::call::peer::{PeerConfig, SdpType, SessionDescription, SignalingState};
use crate::sfu::simulcast;
use crate::sfu::videoroom::{self, RoomEvent, StreamRequest};
use crate::sfu::{Handle, Janus, Jsep, News, SfuError, SfuTarget};

/// The engine's names for the two connections in its peer-event stream; a member id
/// never starts with a control character.
pub(super) const PUBLISHER: &str = "\u{1}sfu-publisher";
pub(super) const SUBSCRIBER: &str = "\u{1}sfu-subscriber";
/// Publishers a room confab creates takes.
const ROOM_PUBLISHERS: u32 = 32;

pub(super) struct Sfu {
    janus: Janus,
    /// Where this is: a new target means a new session.
    pub(super) target: SfuTarget,
    /// Numbers the sessions: news of an earlier one is dropped.
    pub(super) generation: u64,
    room: u64,
    pin: Option<String>,
    publisher: Handle,
    pub(super) subscriber: Handle,
    private_id: Option<u64>,
    pub(super) pub_peer: Option<Peer>,
    pub(super) sub_peer: Option<Peer>,
    /// Feeds of the room other than ours: feed id -> display (the member id).
    feeds: HashMap<u64, String>,
    /// Publisher streams asked for on the subscriber connection: feed -> its mids.
    subscribed: HashMap<u64, HashSet<String>>,
    sub_joined: bool,
    /// What each subscription m-section carried when Janus last offered it, by mid.
    sections: HashMap<String, Section>,
    /// Remote track id (as we name it, see `name_streams`) -> what it carries.
    track_feed: HashMap<String, Carried>,
    /// Remote track id -> what it carries and whose it is, once it arrived.
    pub(super) tracks: HashMap<String, (Carried, String)>,
    /// Remote track id -> whose it is, what it is, its receive counters (for stats).
    pub(super) counters: HashMap<String, (String, MediaKind, Arc<RecvCounters>)>,
    /// Members whose media arrived (reported as connected once).
    pub(super) seen: HashSet<String>,
    pub_connected: bool,
    /// The room's other members, id -> name: chat goes to them through the signaling
    /// server (there is no data channel between members here).
    pub(super) members: HashMap<String, String>,
    /// Which simulcast layers we receive (`layers.rs`).
    pub(super) receiving: super::layers::Receiving,
}

/// A publisher stream: its feed, its mid at the publisher, what it is, and the
/// subscription m-section (mid) it arrives in.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Carried {
    feed: u64,
    feed_mid: Option<String>,
    pub(super) role: TrackRole,
    pub(super) mid: String,
}

/// One m-section of the subscription: which publisher stream it carries, and how many
/// streams it has carried (a new one gets a new track id).
struct Section {
    stream: Option<(u64, Option<String>)>,
    generation: u32,
}

impl Sfu {
    /// Track names for the active streams Janus lists (mid -> stream id, track id): a
    /// section keeps its name while it carries the same publisher stream and gets a new
    /// one when Janus gives it to another (or the same again after a pause), since
    /// webrtc-rs never announces a track id twice.
    fn name_streams(
        &mut self,
        streams: &[videoroom::SubStream],
    ) -> HashMap<String, (String, String)> {
        let mut names = HashMap::new();
        for s in streams.iter().filter(|s| s.kind != "data") {
            let carried = s
                .feed_id
                .filter(|_| s.active)
                .map(|f| (f, s.feed_mid.clone()));
            let section = self.sections.entry(s.mid.clone()).or_insert(Section {
                stream: None,
                generation: 0,
            });
            if carried.is_some() && section.stream != carried {
                section.generation += 1;
            }
            section.stream = carried;
            let Some((feed, feed_mid)) = section.stream.clone() else {
                continue;
            };
            let track = format!("feed-{feed}-m{}-{}", s.mid, section.generation);
            let role = match (s.kind.as_str(), s.feed_description.as_deref()) {
                ("audio", _) => TrackRole::Microphone,
                (_, Some(d)) if d == TrackRole::Screen.as_str() => TrackRole::Screen,
                _ => TrackRole::Camera,
            };
            let carried = Carried {
                feed,
                feed_mid,
                role,
                mid: s.mid.clone(),
            };
            self.track_feed.insert(track.clone(), carried);
            names.insert(s.mid.clone(), (format!("feed-{feed}"), track));
        }
        names
    }
    /// Connects to Janus, makes sure the room exists, attaches both handles. A room
    /// with a pin was made by the signaling server (creating rooms may take an admin
    /// key members do not have); one without is made by whoever comes first.
    pub(super) async fn connect(
        target: &SfuTarget,
        generation: u64,
    ) -> Result<(Self, mpsc::UnboundedReceiver<News>), SfuError> {
        let (janus, news) = Janus::connect(&target.url, target.api_secret.as_deref()).await?;
        let publisher = janus.attach().await?;
        let create = videoroom::create_room(target.room, ROOM_PUBLISHERS, None, None);
        match target.pin {
            Some(_) => {}
            None => match publisher.request(create, None).await {
                Ok(_) => tracing::info!(room = target.room, "created the VideoRoom room"),
                Err(SfuError::Plugin {
                    code: videoroom::ROOM_EXISTS,
                    ..
                }) => {}
                Err(e) => return Err(e),
            },
        }
        let subscriber = janus.attach().await?;
        Ok((
            Self {
                janus,
                target: target.clone(),
                generation,
                room: target.room,
                pin: target.pin.clone(),
                publisher,
                subscriber,
                private_id: None,
                pub_peer: None,
                sub_peer: None,
                feeds: HashMap::new(),
                subscribed: HashMap::new(),
                sub_joined: false,
                sections: HashMap::new(),
                track_feed: HashMap::new(),
                tracks: HashMap::new(),
                counters: HashMap::new(),
                seen: HashSet::new(),
                pub_connected: false,
                members: HashMap::new(),
                receiving: Default::default(),
            },
            news,
        ))
    }
}

fn sfu_error(e: SfuError) -> CallError {
    CallError::Sfu(e)
}

impl Engine {
    fn sfu_peer_config(&self) -> PeerConfig {
        let video = self.config.video.bitrate_bps;
        let audio = self.config.audio_bitrate_bps;
        PeerConfig {
            ice_servers: self.ice.clone(),
            ice_transport: self.config.ice_transport,
            bind_addrs: self.config.bind_addrs.clone(),
            start_bitrate_bps: video.saturating_add(audio),
            max_bitrate_bps: video.saturating_mul(2).saturating_add(audio),
            fec: false,
        }
    }

    /// A connection whose events reach the engine under `name`.
    async fn sfu_peer(&mut self, name: &'static str) -> Result<Peer, CallError> {
        let (peer, mut rx) = Peer::new(self.sfu_peer_config()).await?;
        let tx = self.peer_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tx.send((name.to_owned(), 0, ev)).is_err() {
                    break;
                }
            }
        });
        Ok(peer)
    }

    /// Joins the room as a publisher named by our member id and adds our tracks; the
    /// offer follows from the connection's negotiation-needed.
    pub(super) async fn sfu_publish(&mut self) -> Result<(), CallError> {
        let Some(sfu) = &self.sfu else { return Ok(()) };
        let reply = sfu
            .publisher
            .request(
                videoroom::join_publisher(sfu.room, &self.me, sfu.pin.as_deref()),
                None,
            )
            .await
            .map_err(sfu_error)?;
        let RoomEvent::Joined {
            id,
            private_id,
            publishers,
        } = videoroom::room_event(&reply.plugin).map_err(sfu_error)?
        else {
            return Err(sfu_error(SfuError::Protocol(format!(
                "join: {}",
                reply.plugin
            ))));
        };
        if self.viewer {
            // Joined to hear of the publishers; a viewer publishes nothing.
            tracing::info!(feed = id, "watching the VideoRoom");
            if let Some(sfu) = &mut self.sfu {
                sfu.private_id = private_id;
            }
            return self.sfu_subscribe(publishers).await;
        }
        tracing::info!(feed = id, "publishing in the VideoRoom");
        let peer = self.sfu_peer(PUBLISHER).await?;
        // Audio first, as in the mesh: Opus is what every side takes.
        if let Some(c) = &self.local.mic {
            let track = self.local_track_id(TrackRole::Microphone);
            let s = peer
                .add_audio_track(&track, TrackRole::Camera.as_str())
                .await?;
            c.fanout.add(PUBLISHER, s);
        }
        if let Some(c) = &self.local.camera {
            self.attach(c, &peer, PUBLISHER, TrackRole::Camera).await;
        }
        if let Some(sfu) = &mut self.sfu {
            sfu.private_id = private_id;
            sfu.pub_peer = Some(peer);
            sfu.receiving.forced = self.config.sfu_layer;
        }
        self.sfu_subscribe(publishers).await
    }

    /// Our offer to Janus (`configure`), its answer applied.
    async fn sfu_offer(&mut self) -> Result<(), CallError> {
        let Some(sfu) = &self.sfu else { return Ok(()) };
        let Some(peer) = &sfu.pub_peer else {
            return Ok(());
        };
        if peer.signaling_state().await != SignalingState::Stable {
            return Ok(());
        }
        let offer = peer.create_offer().await?;
        tracing::debug!(sdp = %offer.sdp, "our offer to Janus");
        peer.set_local_description(&offer).await?;
        // Subscribers learn a stream's role from its description.
        let descriptions: Vec<(String, String)> = videoroom::local_tracks(&offer.sdp)
            .into_iter()
            .map(|(mid, track, video)| {
                let role = match video {
                    false => TrackRole::Microphone,
                    true if track.contains(TrackRole::Screen.as_str()) => TrackRole::Screen,
                    true => TrackRole::Camera,
                };
                (mid, role.as_str().to_owned())
            })
            .collect();
        // Our camera's simulcast layers, described to Janus by SSRC (`sfu/simulcast.rs`).
        let mut sdp = offer.sdp;
        if let Some(c) = &self.local.camera
            && let Some(track) = c.fanout.get(PUBLISHER)
            && track.layer_ssrcs().len() > 1
        {
            sdp = simulcast::with_ssrc_simulcast(&sdp, track.track_id(), track.layer_ssrcs());
        }
        let jsep = Jsep {
            kind: "offer".into(),
            sdp,
        };
        let reply = sfu
            .publisher
            .request(videoroom::configure(&descriptions), Some(&jsep))
            .await
            .map_err(sfu_error)?;
        let answer = reply.jsep.ok_or_else(|| {
            sfu_error(SfuError::Protocol(format!(
                "configure: no answer in {}",
                reply.plugin
            )))
        })?;
        tracing::debug!(sdp = %answer.sdp, "Janus's answer");
        peer.set_remote_description(&SessionDescription {
            sdp_type: SdpType::Answer,
            sdp: answer.sdp,
        })
        .await?;
        Ok(())
    }

    /// Adds publishers' streams (not ours) to the subscriber connection: the first join
    /// it, later ones are subscribed to (a stream a publisher adds, a screen, too);
    /// either way Janus offers again.
    async fn sfu_subscribe(
        &mut self,
        publishers: Vec<videoroom::Publisher>,
    ) -> Result<(), CallError> {
        let Some(sfu) = &mut self.sfu else {
            return Ok(());
        };
        let mut new = Vec::new();
        let mut stopped = Vec::new();
        for p in publishers {
            let display = p.display.unwrap_or_default();
            if display == self.me {
                continue;
            }
            sfu.feeds.insert(p.id, display);
            let live: HashSet<String> = p
                .streams
                .iter()
                .filter(|s| !s.disabled && s.kind != "data")
                .map(|s| s.mid.clone())
                .collect();
            match sfu.subscribed.get_mut(&p.id) {
                None => {
                    new.push((p.id, None));
                    sfu.subscribed.insert(p.id, live);
                }
                Some(mids) => {
                    // Janus lists a stream the publisher stopped (a screen share) as
                    // disabled and offers subscribers nothing new: its track ends here.
                    // Gone from our list, the stream is new when it comes back.
                    stopped.extend(
                        mids.iter()
                            .filter(|m| !live.contains(*m))
                            .map(|m| (p.id, m.clone())),
                    );
                    mids.retain(|m| live.contains(m));
                    for mid in live {
                        if mids.insert(mid.clone()) {
                            new.push((p.id, Some(mid)));
                        }
                    }
                }
            }
        }
        for (feed, mid) in stopped {
            self.sfu_end_tracks(feed, Some(&mid));
        }
        let Some(sfu) = &mut self.sfu else {
            return Ok(());
        };
        if new.is_empty() {
            return Ok(());
        }
        let cameras = sfu.subscribed.len();
        let new: Vec<StreamRequest> = new
            .into_iter()
            .map(|(feed, mid)| {
                let member = self.sfu.as_ref().and_then(|s| s.feeds.get(&feed));
                StreamRequest {
                    feed,
                    mid,
                    substream: member.map(|m| self.first_layer(m, cameras)),
                }
            })
            .collect();
        let Some(sfu) = &mut self.sfu else {
            return Ok(());
        };
        let body = if sfu.sub_joined {
            videoroom::subscribe(&new)
        } else {
            sfu.sub_joined = true;
            videoroom::join_subscriber(sfu.room, &new, sfu.private_id, sfu.pin.as_deref())
        };
        let reply = sfu
            .subscriber
            .request(body, None)
            .await
            .map_err(sfu_error)?;
        self.sfu_on_subscriber_event(reply.plugin, reply.jsep).await
    }

    /// `attached`/`updated` on the subscriber: the stream list, and an offer to answer.
    async fn sfu_on_subscriber_event(
        &mut self,
        data: serde_json::Value,
        jsep: Option<Jsep>,
    ) -> Result<(), CallError> {
        if self.on_layer_relayed(&data) {
            return Ok(());
        }
        let streams = match videoroom::room_event(&data).map_err(sfu_error)? {
            RoomEvent::Streams(s) => s,
            _ => Vec::new(),
        };
        let Some(offer) = jsep.filter(|j| j.kind == "offer") else {
            return Ok(());
        };
        if self.sfu.as_ref().is_some_and(|s| s.sub_peer.is_none()) {
            let peer = self.sfu_peer(SUBSCRIBER).await?;
            if let Some(sfu) = &mut self.sfu {
                sfu.sub_peer = Some(peer);
            }
        }
        let Some(sfu) = &mut self.sfu else {
            return Ok(());
        };
        for s in &streams {
            // A feed whose `publishers` event has not come yet.
            if let (Some(feed), Some(display)) = (s.feed_id, &s.feed_display) {
                sfu.feeds.entry(feed).or_insert_with(|| display.clone());
            }
        }
        let names = sfu.name_streams(&streams);
        let sdp = videoroom::with_msids(&offer.sdp, &names);
        tracing::debug!(%sdp, "Janus's offer");
        let Some(peer) = &sfu.sub_peer else {
            return Ok(());
        };
        peer.set_remote_description(&SessionDescription {
            sdp_type: SdpType::Offer,
            sdp,
        })
        .await?;
        let answer = peer.create_answer().await?;
        peer.set_local_description(&answer).await?;
        let jsep = Jsep {
            kind: "answer".into(),
            sdp: answer.sdp,
        };
        sfu.subscriber
            .request(videoroom::start(), Some(&jsep))
            .await
            .map_err(sfu_error)?;
        Ok(())
    }

    /// A feed stopped: its tracks go at once. Janus does not always offer again when a
    /// publisher leaves (not when it leaves right after being subscribed to), so the
    /// webrtc-rs tracks may stay open, silent, until the next offer ends them.
    fn sfu_feed_gone(&mut self, feed: u64) {
        let Some(sfu) = &mut self.sfu else { return };
        sfu.subscribed.remove(&feed);
        if let Some(member) = sfu.feeds.remove(&feed) {
            tracing::info!(%member, feed, "publisher gone");
        }
        self.sfu_end_tracks(feed, None);
    }

    /// Reports the tracks of a feed (or of one of its streams, by the publisher's mid)
    /// as removed, once.
    fn sfu_end_tracks(&mut self, feed: u64, feed_mid: Option<&str>) {
        let Some(sfu) = &mut self.sfu else { return };
        let gone: Vec<String> = sfu
            .tracks
            .iter()
            .filter(|(_, (c, _))| {
                c.feed == feed && feed_mid.is_none_or(|m| c.feed_mid.as_deref() == Some(m))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut removed = Vec::new();
        for id in gone {
            sfu.counters.remove(&id);
            if let Some((c, member)) = sfu.tracks.remove(&id) {
                removed.push((member, c.role));
            }
        }
        for (peer, track) in removed {
            self.emit(Event::TrackRemoved { peer, track });
        }
    }

    /// What Janus says unasked.
    pub(super) async fn on_sfu_news(&mut self, news: News) {
        let Some(sfu) = &self.sfu else { return };
        let (publisher, subscriber) = (sfu.publisher.id, sfu.subscriber.id);
        let result = match news {
            News::Event { handle, data, .. } if handle == publisher => {
                match videoroom::room_event(&data) {
                    Ok(RoomEvent::Publishers(p)) => self.sfu_subscribe(p).await,
                    Ok(RoomEvent::Gone(feed)) => {
                        self.sfu_feed_gone(feed);
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(sfu_error(e)),
                }
            }
            News::Event { handle, data, jsep } if handle == subscriber => {
                self.sfu_on_subscriber_event(data, jsep).await
            }
            News::Event { handle, data, .. } => {
                tracing::debug!(handle, %data, "Janus event for no handle of ours");
                Ok(())
            }
            News::Other { kind, frame } => {
                tracing::debug!(%kind, %frame, "Janus");
                Ok(())
            }
            News::Closed(why) => {
                self.emit(Event::Error(format!("lost the SFU: {why}")));
                Ok(())
            }
        };
        if let Err(e) = result {
            self.emit(Event::Error(format!("SFU: {e}")));
        }
    }

    /// Events of the two connections.
    pub(super) async fn on_sfu_peer_event(&mut self, which: &str, ev: PeerEvent) {
        let Some(sfu) = &mut self.sfu else { return };
        let publishing = which == PUBLISHER;
        match ev {
            PeerEvent::LocalCandidate(c) => {
                let handle = if publishing {
                    sfu.publisher.clone()
                } else {
                    sfu.subscriber.clone()
                };
                // Not awaited inline: the ack would hold up the engine for a round trip.
                tokio::spawn(async move {
                    if let Err(e) = handle.trickle(Some(&c)).await {
                        tracing::warn!("trickle to Janus: {e}");
                    }
                });
            }
            PeerEvent::NegotiationNeeded if publishing => {
                if let Err(e) = self.sfu_offer().await {
                    self.emit(Event::Error(format!("publishing to the SFU: {e}")));
                }
            }
            PeerEvent::ConnectionState(s) => {
                tracing::info!(connection = which.trim_start_matches('\u{1}'), ?s, "SFU");
                if publishing && s == ConnectionState::Connected && !sfu.pub_connected {
                    sfu.pub_connected = true;
                    if let Some(c) = &self.local.camera {
                        c.request_keyframe();
                    }
                }
            }
            PeerEvent::RemoteTrack {
                track_id,
                kind,
                media,
                keyframes,
                ..
            } => {
                let owner = sfu
                    .track_feed
                    .get(&track_id)
                    .and_then(|c| Some((c.clone(), sfu.feeds.get(&c.feed)?.clone())));
                let Some((carried, member)) = owner else {
                    tracing::warn!(%track_id, "a track from the SFU that no publisher owns");
                    return;
                };
                let role = carried.role;
                sfu.tracks
                    .insert(track_id.clone(), (carried, member.clone()));
                let first = sfu.seen.insert(member.clone());
                let counters = super::mesh::decode_remote(
                    &self.sink,
                    &self.kf_tx,
                    &member,
                    role,
                    media,
                    keyframes,
                );
                sfu.counters
                    .insert(track_id, (member.clone(), kind, counters));
                if first {
                    self.emit(Event::Connection {
                        id: member.clone(),
                        state: ConnectionState::Connected,
                    });
                }
                self.emit(Event::TrackAdded {
                    peer: member,
                    track: role,
                    kind,
                });
                if role == TrackRole::Camera {
                    self.choose_layers().await;
                }
            }
            PeerEvent::RemoteTrackEnded { track_id } => {
                sfu.counters.remove(&track_id);
                if let Some((c, member)) = sfu.tracks.remove(&track_id) {
                    self.emit(Event::TrackRemoved {
                        peer: member,
                        track: c.role,
                    });
                }
            }
            _ => {}
        }
    }

    /// What may be sent to Janus now, once the publisher connection is up.
    pub(super) fn sfu_estimate(&self) -> Option<f64> {
        let sfu = self.sfu.as_ref().filter(|s| s.pub_connected)?;
        sfu.pub_peer.as_ref()?.send_estimate()
    }

    /// The loss Janus reports on the audio we publish.
    pub(super) fn sfu_audio_loss(&self) -> Option<f64> {
        let sfu = self.sfu.as_ref().filter(|s| s.pub_connected)?;
        sfu.pub_peer.as_ref()?.audio_loss()
    }

    /// Our publisher connection, once we publish.
    pub(super) fn sfu_publisher(&self) -> Option<Peer> {
        self.sfu.as_ref()?.pub_peer.clone()
    }

    /// A PLI on the subscriber connection; Janus passes it on to the publisher.
    pub(super) async fn sfu_request_keyframe(&self, member: &str, role: TrackRole) {
        let Some(sfu) = &self.sfu else { return };
        let Some(peer) = &sfu.sub_peer else { return };
        let track = sfu
            .tracks
            .iter()
            .find(|(_, (c, m))| m == member && c.role == role)
            .map(|(id, _)| id.clone());
        if let Some(track) = track
            && let Err(e) = peer.request_keyframe(&track).await
        {
            self.emit(Event::Error(format!("keyframe request: {e}")));
        }
    }

    /// Leaves the room and ends the Janus session.
    pub(super) async fn close_sfu(&mut self) {
        let Some(sfu) = self.sfu.take() else { return };
        for peer in [&sfu.pub_peer, &sfu.sub_peer].into_iter().flatten() {
            let _ = peer.close().await;
        }
        // Bounded: a Janus that died answers nothing.
        let farewell = async {
            let _ = sfu.publisher.request(videoroom::leave(), None).await;
            let _ = sfu.janus.destroy().await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), farewell).await;
    }
}
