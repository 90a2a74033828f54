//! SFU mode: which simulcast layer of each member's camera we receive. The choice is
//! `sfu::layers` (pure), fed by the tile sizes the UI reports (a front end that draws
//! tiles gets the smallest layer until it has: `CallConfig::draws_tiles`), a forced layer and our
//! own downlink estimate (`sfu::downlink`: Janus 1.1 estimates nothing towards
//! subscribers); Janus is asked with `configure` on the subscriber handle and says when
//! it switched. A layer the publisher stops sending (its uplink is narrow) Janus
//! replaces with the next smaller by itself, and switches back when it returns.
//!
//! A member's layers are those of the camera size it announces (`camera_size` in its
//! media state; a 720p camera until then), at our own configured rate.

use std::collections::HashMap;
use std::time::Instant;

use super::*;
use crate::call::peer::PeerStats;
use crate::call::simulcast::{LAYERS, LayerSpec, layers, top_for_total};
use crate::sfu::downlink::{Downlink, Received};
use crate::sfu::layers::{LayerChoice, Tile, Wants};
use crate::sfu::simulcast;

/// The receiving side's simulcast state.
#[derive(Default)]
pub(super) struct Receiving {
    pub(super) forced: Option<u8>,
    /// Per subscription m-section (mid): the choice and the layer last asked for.
    choices: HashMap<String, (LayerChoice, Option<u8>)>,
    pub(super) downlink: Downlink,
    /// Layer asks, sent to Janus one after another: two in flight could arrive the
    /// other way round and leave Janus on the older one.
    asks: Option<mpsc::UnboundedSender<(String, u8)>>,
}

/// Sends `configure` requests in the order given, each after the last was answered (not
/// inline: a reply would hold up the engine for a round trip). Ends with the Sfu.
fn ask_in_order(
    subscriber: crate::sfu::Handle,
    events: mpsc::UnboundedSender<Event>,
) -> mpsc::UnboundedSender<(String, u8)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, u8)>();
    tokio::spawn(async move {
        while let Some((mid, layer)) = rx.recv().await {
            let ask = simulcast::configure_substream(&mid, layer);
            if let Err(e) = subscriber.request(ask, None).await {
                let _ = events.send(Event::Error(format!("SFU layer: {e}")));
            }
        }
    });
    tx
}

impl Engine {
    /// A member's camera layers: the size it announces (a 720p camera until it does),
    /// at our own configured rate.
    fn layers_of(&self, member: &str) -> Vec<LayerSpec> {
        let size = self
            .states
            .get(member)
            .and_then(|s| s.camera_size)
            .map_or((1280, 720), |[w, h]| (usize::from(w), usize::from(h)));
        let total = self.config.video.bitrate_bps;
        layers(size, top_for_total(total, LAYERS), LAYERS)
    }

    /// The subscriber connection's statistics, once a second: the downlink estimate,
    /// and the layers again when it changed.
    pub(super) async fn judge_downlink(&mut self, inbound: &PeerStats) {
        let Some(sfu) = &mut self.sfu else { return };
        let total = inbound.inbound.iter().fold(Received::default(), |t, s| {
            let reported = s.sender_packets_sent > 0;
            Received {
                bytes: t.bytes + s.bytes_received,
                packets: t.packets + if reported { s.packets_received } else { 0 },
                sent: t.sent + s.sender_packets_sent,
                all_packets: t.all_packets + s.packets_received,
                missing: t.missing + s.packets_lost,
            }
        });
        tracing::debug!(?total, "downlink counters");
        if let Some(bps) = sfu.receiving.downlink.update(Instant::now(), total) {
            tracing::info!(kbps = bps / 1000, "downlink estimate");
            self.choose_layers().await;
        }
    }

    /// Kept whatever the mode: a mesh that moves to the SFU starts from what is drawn.
    pub(super) async fn show_tile(
        &mut self,
        peer: String,
        track: TrackRole,
        size: Option<(u32, u32)>,
    ) {
        match size {
            Some(s) => self.tiles.insert((peer, track), s),
            None => self.tiles.remove(&(peer, track)),
        };
        self.choose_layers().await;
    }

    /// What we know of how `member`'s camera is shown, for the layer choice.
    fn tile_of(&self, member: &str) -> Tile {
        match self.tiles.get(&(member.to_owned(), TrackRole::Camera)) {
            Some(&(w, h)) => Tile::Size(w, h),
            None if self.config.draws_tiles => Tile::Pending,
            None => Tile::Any,
        }
    }

    /// The layer to subscribe to `member`'s camera in, before Janus names its stream
    /// (`choose_layers` takes over once it has).
    pub(super) fn first_layer(&self, member: &str, cameras: usize) -> u8 {
        let Some(sfu) = &self.sfu else { return 0 };
        let r = &sfu.receiving;
        let wants = Wants {
            tile: self.tile_of(member),
            budget_bps: r.downlink.per_camera_bps(cameras),
            forced: r.forced,
            sent: self.sent_layers(member),
        };
        LayerChoice::default().update(Instant::now(), &self.layers_of(member), wants)
    }

    /// How many layers `member` sends now, once its media state said.
    fn sent_layers(&self, member: &str) -> Option<u8> {
        self.states
            .get(member)
            .map(|s| s.camera_layers)
            .filter(|n| *n > 0)
    }

    pub(super) async fn force_layer(&mut self, layer: Option<u8>) {
        let Some(sfu) = &mut self.sfu else { return };
        sfu.receiving.forced = layer;
        self.choose_layers().await;
    }

    /// Asks Janus for each camera's layer where the choice changed.
    pub(super) async fn choose_layers(&mut self) {
        // Each camera: its m-section, whose it is, that member's layers and how many
        // of them it sends now.
        let Some(sfu) = &self.sfu else { return };
        let cameras: Vec<(String, Tile, Vec<LayerSpec>, Option<u8>)> = sfu
            .tracks
            .values()
            .filter(|(c, _)| c.role == TrackRole::Camera)
            .map(|(c, member)| {
                let sent = self.sent_layers(member);
                (
                    c.mid.clone(),
                    self.tile_of(member),
                    self.layers_of(member),
                    sent,
                )
            })
            .collect();
        let Some(sfu) = &mut self.sfu else { return };
        let now = Instant::now();
        let r = &mut sfu.receiving;
        r.choices
            .retain(|mid, _| cameras.iter().any(|(m, ..)| m == mid));
        let budget_bps = r.downlink.per_camera_bps(cameras.len());
        let mut asks = Vec::new();
        for (mid, tile, member_layers, sent) in cameras {
            let wants = Wants {
                tile,
                budget_bps,
                forced: r.forced,
                sent,
            };
            let (choice, asked) = r.choices.entry(mid.clone()).or_default();
            let layer = choice.update(now, &member_layers, wants);
            if *asked != Some(layer) {
                *asked = Some(layer);
                asks.push((mid, layer));
            }
        }
        if asks.is_empty() {
            return;
        }
        let queue = r
            .asks
            .get_or_insert_with(|| ask_in_order(sfu.subscriber.clone(), self.events.clone()));
        for (mid, layer) in asks {
            tracing::info!(%mid, layer, "asking the SFU for a simulcast layer");
            let _ = queue.send((mid, layer));
        }
    }

    /// Janus's word that it switched a stream's layer; false if `data` is not that.
    pub(super) fn on_layer_relayed(&self, data: &serde_json::Value) -> bool {
        let Some((mid, layer)) = simulcast::relayed_substream(data) else {
            return false;
        };
        let Some(sfu) = &self.sfu else { return true };
        let owner = sfu
            .tracks
            .values()
            .find(|(c, _)| c.mid == mid)
            .map(|(c, member)| (member.clone(), c.role));
        if let Some((peer, track)) = owner {
            tracing::info!(%peer, layer, "the SFU relays another layer");
            self.emit(Event::LayerRelayed { peer, track, layer });
        }
        true
    }
}
