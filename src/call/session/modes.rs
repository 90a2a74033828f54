//! Following the room's media mode: the server says (welcome, `room_media`) whether
//! media goes through a mesh or its SFU, and the engine takes down one and sets up the
//! other. Members stay members: presence, chat and calls go on through the signaling
//! server, and tiles and events stay per member.

use crate::signaling::protocol::{MediaState, Member, RoomMedia};

use super::*;
use crate::sfu::{News, SfuError, SfuTarget};

impl Engine {
    /// Moves media where the server says. A call started with an SFU of its own
    /// (`CallConfig.sfu`) keeps it.
    pub(super) async fn follow_media(&mut self, media: RoomMedia) {
        if self.config.sfu.is_some() {
            return;
        }
        match media {
            RoomMedia::Sfu {
                url,
                room,
                pin,
                api_secret,
            } => {
                let target = SfuTarget {
                    url,
                    room,
                    pin,
                    api_secret,
                };
                if self.sfu.as_ref().is_some_and(|s| s.target == target) {
                    return;
                }
                let members: Vec<(String, String)> = match &self.sfu {
                    Some(sfu) => sfu.members.clone().into_iter().collect(),
                    None => self
                        .peers
                        .iter()
                        .map(|(id, p)| (id.clone(), p.name.clone()))
                        .chain(self.unconnected.drain())
                        .collect(),
                };
                self.close_all_peers().await;
                self.close_sfu().await;
                tracing::info!(url = %target.url, room, "media moves to the SFU");
                if let Err(e) = self.open_sfu(&target).await {
                    self.emit(Event::Error(format!("cannot reach the room's SFU: {e}")));
                    return;
                }
                if let Some(sfu) = &mut self.sfu {
                    sfu.members.extend(members);
                }
                self.emit(Event::MediaMode { sfu: true });
                if let Some(c) = &mut self.local.camera {
                    c.set_layers(self.config.simulcast_layers);
                }
                self.reset_rates();
                if let Err(e) = self.sfu_publish().await {
                    self.emit(Event::Error(format!("publishing to the SFU: {e}")));
                }
            }
            RoomMedia::Mesh => {
                let Some(sfu) = &self.sfu else { return };
                let members = sfu.members.clone();
                self.close_sfu().await;
                tracing::info!("media moves back to a mesh");
                self.emit(Event::MediaMode { sfu: false });
                if let Some(c) = &mut self.local.camera {
                    c.set_layers(1);
                }
                self.reset_rates();
                for (id, name) in members {
                    let state = self.states.get(&id).copied().unwrap_or_default();
                    let viewer = self.viewers.contains(&id);
                    self.add_peer(Member {
                        id,
                        name,
                        state,
                        viewer,
                    })
                    .await;
                }
            }
        }
    }

    /// Connects to `target`; its news reach the engine's loop tagged with a generation
    /// of their own, so a session left behind is not heard.
    pub(super) async fn open_sfu(&mut self, target: &SfuTarget) -> Result<(), SfuError> {
        self.sfu_generation += 1;
        let generation = self.sfu_generation;
        let (sfu, news) = sfu::Sfu::connect(target, generation).await?;
        forward_news(news, generation, self.sfu_news_tx.clone());
        self.sfu = Some(sfu);
        Ok(())
    }

    /// A member's media state as last told, for a mesh connection set up later.
    pub(super) fn remember_state(&mut self, id: &str, state: Option<MediaState>) {
        match state {
            Some(s) => {
                self.states.insert(id.to_owned(), s);
            }
            None => {
                self.states.remove(id);
            }
        }
    }
}

/// Passes one Janus session's news to the engine's loop.
pub(super) fn forward_news(
    mut news: mpsc::UnboundedReceiver<News>,
    generation: u64,
    tx: mpsc::UnboundedSender<(u64, News)>,
) {
    tokio::spawn(async move {
        while let Some(n) = news.recv().await {
            if tx.send((generation, n)).is_err() {
                break;
            }
        }
    });
}
