//! The signaling server's side of Janus: it opens a VideoRoom for each confab room the
//! hub moves to the SFU (H.264 + Opus, a random number and pin), watches the Janus
//! session it made it with, and destroys the room when the hub lets it go. After a
//! restart it takes back the VideoRooms the state file names, if Janus still has them.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::janus::{Handle, Janus, News};
use super::{SfuError, videoroom};
use crate::signaling::protocol::RoomMedia;
use crate::signaling::{SfuJob, SfuService};

/// Publishers a room takes: past the biggest room a server lets members make.
const ROOM_PUBLISHERS: u32 = 64;
/// Opening a room past this fails (the joiner's welcome waits for it, and a client waits
/// 10 s for a welcome).
const OPEN_WITHIN: Duration = Duration::from_secs(5);

/// `confab serve --sfu janus=URL`: one Janus, reached the same way by the server and
/// by members.
#[derive(Debug, Clone)]
pub struct JanusRooms {
    pub url: String,
    /// Janus's `apisecret` (members need it too).
    pub api_secret: Option<String>,
    /// The VideoRoom's `admin_key`, when creating rooms takes one (only the server).
    pub admin_key: Option<String>,
}

impl SfuService for JanusRooms {
    fn open(&self, job: SfuJob) {
        let rooms = self.clone();
        tokio::spawn(async move { rooms.open_for(job, None).await });
    }

    fn adopt(&self, job: SfuJob, media: RoomMedia) {
        let rooms = self.clone();
        tokio::spawn(async move { rooms.open_for(job, Some(media)).await });
    }
}

impl JanusRooms {
    /// Opens a VideoRoom for `job` (or keeps `earlier`, if Janus still has it) and
    /// watches it until the hub lets it go.
    async fn open_for(self, job: SfuJob, earlier: Option<RoomMedia>) {
        let opened = tokio::time::timeout(OPEN_WITHIN, self.create_or_keep(earlier)).await;
        let (janus, handle, news, media) = match opened {
            Ok(Ok(made)) => made,
            Ok(Err(e)) => return job.failed(&e.to_string()),
            Err(_) => {
                let why = format!("Janus at {} did not answer in {OPEN_WITHIN:?}", self.url);
                return job.failed(&why);
            }
        };
        let RoomMedia::Sfu { room, .. } = media else {
            unreachable!("create makes an SFU room")
        };
        match job.opened(media) {
            Some(lease) => watch(&job, &janus, &handle, room, news, lease).await,
            None => close(&janus, &handle, room).await,
        }
    }

    /// `earlier` if it is on this Janus and Janus still has it, else a new room.
    async fn create_or_keep(
        &self,
        earlier: Option<RoomMedia>,
    ) -> Result<(Janus, Handle, mpsc::UnboundedReceiver<News>, RoomMedia), SfuError> {
        let (janus, news) = Janus::connect(&self.url, self.api_secret.as_deref()).await?;
        let handle = janus.attach().await?;
        if let Some(media @ RoomMedia::Sfu { .. }) = earlier {
            let RoomMedia::Sfu { url, room, .. } = &media else {
                unreachable!()
            };
            if *url == self.url {
                let reply = handle.request(videoroom::room_exists(*room), None).await?;
                if videoroom::exists_in(&reply.plugin) {
                    tracing::info!(room, "the VideoRoom from before the restart is still there");
                    return Ok((janus, handle, news, media));
                }
                tracing::info!(
                    room,
                    "the VideoRoom from before the restart is gone: a new one"
                );
            }
        }
        let media = self.create(&handle).await?;
        Ok((janus, handle, news, media))
    }

    /// A new room through `handle`.
    async fn create(&self, handle: &Handle) -> Result<RoomMedia, SfuError> {
        let pin = format!("{:032x}", rand::random::<u128>());
        // Within what Janus's JSON numbers carry exactly; a number taken is drawn again.
        for _ in 0..3 {
            let room = (rand::random::<u64>() & ((1 << 52) - 1)).max(1);
            let body = videoroom::create_room(
                room,
                ROOM_PUBLISHERS,
                Some(&pin),
                self.admin_key.as_deref(),
            );
            match handle.request(body, None).await {
                Ok(_) => {
                    return Ok(RoomMedia::Sfu {
                        url: self.url.clone(),
                        room,
                        pin: Some(pin),
                        api_secret: self.api_secret.clone(),
                    });
                }
                Err(SfuError::Plugin {
                    code: videoroom::ROOM_EXISTS,
                    ..
                }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SfuError::Protocol("no free room number".into()))
    }
}

/// Until the hub lets the room go (then it is destroyed) or the session dies (then the
/// hub is told).
async fn watch(
    job: &SfuJob,
    janus: &Janus,
    handle: &Handle,
    room: u64,
    mut news: mpsc::UnboundedReceiver<News>,
    mut lease: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut lease => return close(janus, handle, room).await,
            n = news.recv() => match n {
                None => return job.lost("the Janus session ended"),
                Some(News::Closed(why)) => {
                    return job.lost(&format!("lost Janus at the server: {why}"));
                }
                // Janus timed our session out: its rooms' handles are gone with it.
                Some(News::Other { kind, .. }) if kind == "timeout" => {
                    return job.lost("Janus timed the session out");
                }
                Some(_) => {}
            },
        }
    }
}

async fn close(janus: &Janus, handle: &Handle, room: u64) {
    tracing::info!(room, "destroying the VideoRoom");
    let farewell = async {
        if let Err(e) = handle.request(videoroom::destroy_room(room), None).await {
            tracing::warn!(room, "destroying the VideoRoom: {e}");
        }
        let _ = janus.destroy().await;
    };
    let _ = tokio::time::timeout(OPEN_WITHIN, farewell).await;
}
