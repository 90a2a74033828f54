//! Per-member statistics in SFU mode. There is no connection per member: a member's
//! inbound side is its streams on the subscriber connection, and what we send goes
//! once to Janus on the publisher connection (so every member shows the same outbound
//! figures and estimate: the uplink Janus forwards to all of them).

use super::*;
use crate::call::peer::PeerStats;
use std::sync::atomic::Ordering;

impl Engine {
    /// Members learn how many of our camera's layers we send (it changes behind a
    /// narrow uplink), so they ask Janus only for one that comes.
    fn announce_layers(&mut self) {
        let counters = self.local.camera.as_ref().map(|c| c.counters.clone());
        let (layers, size) = counters.map_or((0, 0), |c| {
            (
                c.layers.load(Ordering::Relaxed),
                c.layers_size.load(Ordering::Relaxed),
            )
        });
        let layers = u8::try_from(layers).unwrap_or(u8::MAX);
        let size = (layers > 0 && size > 0).then(|| {
            let w = u16::try_from(size >> 16).unwrap_or(u16::MAX);
            [w, (size & 0xffff) as u16]
        });
        let state = &mut self.local.state;
        if (layers, size) != (state.camera_layers, state.camera_size) {
            state.camera_layers = layers;
            state.camera_size = size;
            self.publish_state();
        }
    }

    pub(super) async fn report_sfu_stats(&mut self) {
        self.announce_layers();
        let Some(sfu) = &self.sfu else { return };
        let (sub, publ) = (sfu.sub_peer.clone(), sfu.pub_peer.clone());
        let inbound = match sub {
            Some(p) => p.stats().await,
            None => PeerStats::default(),
        };
        let outbound = match publ {
            Some(p) => p.stats().await,
            None => PeerStats::default(),
        };
        self.judge_downlink(&inbound).await;
        let Some(sfu) = &self.sfu else { return };
        let mut out = Vec::with_capacity(sfu.members.len());
        for (member, name) in &sfu.members {
            let remote: HashMap<String, (MediaKind, Arc<RecvCounters>)> = sfu
                .counters
                .iter()
                .filter(|(_, (m, ..))| m == member)
                .map(|(track, (_, kind, c))| (track.clone(), (*kind, c.clone())))
                .collect();
            let transport = PeerStats {
                inbound: inbound
                    .inbound
                    .iter()
                    .filter(|t| remote.contains_key(&t.track_id))
                    .cloned()
                    .collect(),
                outbound: outbound.outbound.clone(),
                rtt: outbound.rtt.or(inbound.rtt),
                send_estimate_bps: outbound.send_estimate_bps,
                path: outbound.path.clone(),
                ..PeerStats::default()
            };
            let state = if sfu.seen.contains(member) {
                ConnectionState::Connected
            } else {
                ConnectionState::Connecting
            };
            out.push(self.stats.sample(
                member,
                name,
                state,
                None,
                &transport,
                &remote,
                self.local.camera.as_ref().map(|c| &*c.counters),
                self.local.mic.as_ref().map(|c| &*c.counters),
            ));
        }
        self.emit(Event::Stats(out));
    }
}
