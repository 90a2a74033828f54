//! SFU mode: which simulcast layer of each member's camera we receive. The choice is
//! `sfu::layers` (pure), fed by the tile sizes the UI reports and a forced layer;
//! Janus is asked with `configure` on the subscriber handle and says when it switched.
//!
//! The layers are assumed to be a 720p camera's (`call::simulcast::layers`): a
//! subscriber does not know a publisher's size before it receives the largest layer.
//! There is no downlink estimate to feed in yet: Janus 1.1 does no bandwidth estimation
//! towards subscribers, and ours is send-side only.

use std::collections::HashMap;
use std::time::Instant;

use super::*;
use crate::call::simulcast::{LAYERS, LayerSpec, layers};
use crate::sfu::layers::{LayerChoice, Wants};
use crate::sfu::simulcast;

/// The receiving side's simulcast state.
#[derive(Default)]
pub(super) struct Receiving {
    /// Tile sizes the UI reported, by member and track.
    tiles: HashMap<(String, TrackRole), (u32, u32)>,
    pub(super) forced: Option<u8>,
    /// Per subscription m-section (mid): the choice and the layer last asked for.
    choices: HashMap<String, (LayerChoice, Option<u8>)>,
}

impl Engine {
    fn nominal_layers(&self) -> Vec<LayerSpec> {
        layers((1280, 720), self.config.video.bitrate_bps, LAYERS)
    }

    pub(super) async fn show_tile(
        &mut self,
        peer: String,
        track: TrackRole,
        size: Option<(u32, u32)>,
    ) {
        let Some(sfu) = &mut self.sfu else { return };
        match size {
            Some(s) => sfu.receiving.tiles.insert((peer, track), s),
            None => sfu.receiving.tiles.remove(&(peer, track)),
        };
        self.choose_layers().await;
    }

    pub(super) async fn force_layer(&mut self, layer: Option<u8>) {
        let Some(sfu) = &mut self.sfu else { return };
        sfu.receiving.forced = layer;
        self.choose_layers().await;
    }

    /// Asks Janus for each camera's layer where the choice changed.
    pub(super) async fn choose_layers(&mut self) {
        let specs = self.nominal_layers();
        let Some(sfu) = &mut self.sfu else { return };
        let now = Instant::now();
        let cameras: Vec<(String, String)> = sfu
            .tracks
            .values()
            .filter(|(c, _)| c.role == TrackRole::Camera)
            .map(|(c, member)| (c.mid.clone(), member.clone()))
            .collect();
        let r = &mut sfu.receiving;
        r.choices
            .retain(|mid, _| cameras.iter().any(|(m, _)| m == mid));
        let mut asks = Vec::new();
        for (mid, member) in cameras {
            let wants = Wants {
                tile: r.tiles.get(&(member, TrackRole::Camera)).copied(),
                budget_bps: None,
                forced: r.forced,
            };
            let (choice, asked) = r.choices.entry(mid.clone()).or_default();
            let layer = choice.update(now, &specs, wants);
            if *asked != Some(layer) {
                *asked = Some(layer);
                asks.push((mid, layer));
            }
        }
        for (mid, layer) in asks {
            tracing::info!(%mid, layer, "asking the SFU for a simulcast layer");
            let handle = sfu.subscriber.clone();
            // Not awaited inline: the reply would hold up the engine for a round trip.
            let events = self.events.clone();
            tokio::spawn(async move {
                if let Err(e) = handle
                    .request(simulcast::configure_substream(&mid, layer), None)
                    .await
                {
                    let _ = events.send(Event::Error(format!("SFU layer: {e}")));
                }
            });
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
