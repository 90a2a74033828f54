//! Perfect negotiation (W3C pattern) over a [`Peer`](super::peer::Peer).
//!
//! Inputs: local "negotiation needed" and incoming [`Signal`]s. Output: `Signal`s to relay.
//! The caller feeds one `Negotiator` per peer from a single task, so its steps never
//! interleave; a collision is therefore "an offer arrives while we are not stable".
//!
//! - The impolite side ignores a colliding offer (and errors from its candidates).
//! - The polite side rolls back its own offer explicitly (0.21 supports rollback but does not
//!   apply it implicitly), answers, and offers again once stable: the core re-fires
//!   negotiation-needed on return to stable while anything is un-negotiated (and also
//!   when the answer already settled everything: such an offer is not sent).
//! - Candidates that arrive before any remote description are queued, then applied right
//!   after the next remote description.
//! - An offer of ours unanswered for [`STALE_OFFER`] was lost with a signaling link that
//!   died under it (the network changed): the impolite side then yields as the polite one
//!   does, or neither side would ever answer the other.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::error::{CallError, Result};
use super::peer::{IceCandidate, Peer, SdpType, SessionDescription, SignalingState};

/// The opaque payload the signaling server relays between two members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Signal {
    Description {
        sdp_type: SdpType,
        sdp: String,
    },
    Candidate {
        candidate: IceCandidate,
    },
    /// The polite side asks for an ICE restart: only the impolite side offers one (a
    /// browser that rolls back its own restart offer can stop showing the peer's video).
    Restart,
}

impl Signal {
    fn description(d: SessionDescription) -> Self {
        Self::Description {
            sdp_type: d.sdp_type,
            sdp: d.sdp,
        }
    }
}

/// What the negotiator needs from a connection; implemented by [`Peer`], fakeable in tests.
#[async_trait]
pub trait SdpEndpoint: Send + Sync {
    async fn create_offer(&self) -> Result<SessionDescription>;
    async fn create_answer(&self) -> Result<SessionDescription>;
    async fn set_local_description(&self, desc: &SessionDescription) -> Result<()>;
    async fn set_remote_description(&self, desc: &SessionDescription) -> Result<()>;
    async fn add_ice_candidate(&self, candidate: IceCandidate) -> Result<()>;
    async fn has_remote_description(&self) -> bool;
    async fn signaling_state(&self) -> SignalingState;
    /// Whether `offer` would change anything the descriptions in force settled.
    async fn offer_settles_something(&self, offer: &SessionDescription) -> bool;
    /// We did not send an offer it asked for (it would have settled nothing).
    fn offer_skipped(&self) {}
}

#[async_trait]
impl SdpEndpoint for Peer {
    async fn create_offer(&self) -> Result<SessionDescription> {
        Peer::create_offer(self).await
    }
    async fn create_answer(&self) -> Result<SessionDescription> {
        Peer::create_answer(self).await
    }
    async fn set_local_description(&self, desc: &SessionDescription) -> Result<()> {
        Peer::set_local_description(self, desc).await
    }
    async fn set_remote_description(&self, desc: &SessionDescription) -> Result<()> {
        Peer::set_remote_description(self, desc).await
    }
    async fn add_ice_candidate(&self, candidate: IceCandidate) -> Result<()> {
        Peer::add_ice_candidate(self, candidate).await
    }
    async fn has_remote_description(&self) -> bool {
        Peer::has_remote_description(self).await
    }
    async fn signaling_state(&self) -> SignalingState {
        Peer::signaling_state(self).await
    }
    async fn offer_settles_something(&self, offer: &SessionDescription) -> bool {
        Peer::offer_settles_something(self, offer).await
    }
    fn offer_skipped(&self) {
        Peer::offer_skipped(self)
    }
}

/// Counters, mainly so tests can prove a glare really happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NegotiationStats {
    pub offers_sent: u32,
    pub answers_sent: u32,
    /// Impolite side: colliding offers ignored.
    pub offers_ignored: u32,
    /// Polite side: own offers rolled back on collision.
    pub rollbacks: u32,
    pub candidates_queued: u32,
    /// Offers not sent because they would have settled nothing new (the round trip
    /// webrtc-rs asks for after a rollback whose answer already said it all).
    pub offers_skipped: u32,
}

/// An offer this old with no answer counts as lost (an answer takes a round trip through
/// the server: milliseconds, not seconds).
pub const STALE_OFFER: Duration = Duration::from_secs(2);

/// Perfect-negotiation state for one remote member.
#[derive(Debug)]
pub struct Negotiator {
    polite: bool,
    making_offer: bool,
    /// Our offer now waiting for an answer, and when it went out.
    pending: Option<(Instant, SessionDescription)>,
    ignore_offer: bool,
    pending_candidates: Vec<IceCandidate>,
    stats: NegotiationStats,
}

impl Negotiator {
    /// `polite`: decided by the caller, e.g. the member with the lower id is polite.
    pub fn new(polite: bool) -> Self {
        Self {
            polite,
            making_offer: false,
            pending: None,
            ignore_offer: false,
            pending_candidates: Vec::new(),
            stats: NegotiationStats::default(),
        }
    }

    pub fn is_polite(&self) -> bool {
        self.polite
    }

    pub fn stats(&self) -> NegotiationStats {
        self.stats
    }

    /// Our offer still waiting for its answer, to send again when the other side may
    /// never have had it (its signaling link died while it was under way).
    pub fn pending_offer(&self) -> Option<Signal> {
        self.pending
            .as_ref()
            .map(|(_, offer)| Signal::description(offer.clone()))
    }

    /// Our pending offer has waited [`STALE_OFFER`] for its answer: it was lost.
    fn offer_lost(&self, now: Instant) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= STALE_OFFER)
    }

    /// Takes back our pending offer.
    async fn rollback<E: SdpEndpoint + ?Sized>(&mut self, endpoint: &E) -> Result<()> {
        let rollback = SessionDescription {
            sdp_type: SdpType::Rollback,
            sdp: String::new(),
        };
        endpoint.set_local_description(&rollback).await?;
        self.pending = None;
        self.stats.rollbacks += 1;
        Ok(())
    }

    /// Offers again, for an ICE restart: an offer of ours still unanswered after
    /// [`STALE_OFFER`] was lost (with the link that carried it) and is rolled back first,
    /// or no new offer could ever be made.
    pub async fn reoffer_at<E: SdpEndpoint + ?Sized>(
        &mut self,
        endpoint: &E,
        now: Instant,
    ) -> Result<Vec<Signal>> {
        if self.offer_lost(now)
            && endpoint.signaling_state().await == SignalingState::HaveLocalOffer
        {
            self.rollback(endpoint).await?;
        }
        self.on_negotiation_needed_at(endpoint, now).await
    }

    /// Handles `PeerEvent::NegotiationNeeded`: returns the offer to send, if one was made.
    pub async fn on_negotiation_needed<E: SdpEndpoint + ?Sized>(
        &mut self,
        endpoint: &E,
    ) -> Result<Vec<Signal>> {
        self.on_negotiation_needed_at(endpoint, Instant::now())
            .await
    }

    pub async fn on_negotiation_needed_at<E: SdpEndpoint + ?Sized>(
        &mut self,
        endpoint: &E,
        now: Instant,
    ) -> Result<Vec<Signal>> {
        // Not stable: an exchange is in flight. The core re-checks when it gets back to stable.
        if endpoint.signaling_state().await != SignalingState::Stable {
            return Ok(Vec::new());
        }
        self.making_offer = true;
        let result = async {
            let offer = endpoint.create_offer().await?;
            if !endpoint.offer_settles_something(&offer).await {
                return Ok(None);
            }
            endpoint.set_local_description(&offer).await?;
            Ok::<_, CallError>(Some(offer))
        }
        .await;
        self.making_offer = false;
        let Some(offer) = result? else {
            endpoint.offer_skipped();
            self.stats.offers_skipped += 1;
            return Ok(Vec::new());
        };
        self.pending = Some((now, offer.clone()));
        self.stats.offers_sent += 1;
        Ok(vec![Signal::description(offer)])
    }

    /// Handles a signal from the remote; returns the signals to send back.
    pub async fn on_signal<E: SdpEndpoint + ?Sized>(
        &mut self,
        endpoint: &E,
        signal: Signal,
    ) -> Result<Vec<Signal>> {
        self.on_signal_at(endpoint, signal, Instant::now()).await
    }

    pub async fn on_signal_at<E: SdpEndpoint + ?Sized>(
        &mut self,
        endpoint: &E,
        signal: Signal,
        now: Instant,
    ) -> Result<Vec<Signal>> {
        match signal {
            Signal::Description { sdp_type, sdp } => {
                self.on_description(endpoint, SessionDescription { sdp_type, sdp }, now)
                    .await
            }
            Signal::Candidate { candidate } => {
                if !endpoint.has_remote_description().await {
                    self.stats.candidates_queued += 1;
                    self.pending_candidates.push(candidate);
                    return Ok(Vec::new());
                }
                match endpoint.add_ice_candidate(candidate).await {
                    Ok(()) => Ok(Vec::new()),
                    // Belongs to the offer we ignored; harmless.
                    Err(_) if self.ignore_offer => Ok(Vec::new()),
                    Err(err) => Err(err),
                }
            }
            // The session restarts ICE itself (see `Session::restart_asked`).
            Signal::Restart => Ok(Vec::new()),
        }
    }

    async fn on_description<E: SdpEndpoint + ?Sized>(
        &mut self,
        endpoint: &E,
        desc: SessionDescription,
        now: Instant,
    ) -> Result<Vec<Signal>> {
        let state = endpoint.signaling_state().await;
        let is_offer = desc.sdp_type == SdpType::Offer;
        let ready_for_offer = !self.making_offer && state == SignalingState::Stable;
        let collision = is_offer && !ready_for_offer;
        self.ignore_offer = !self.polite && collision && !self.offer_lost(now);
        if self.ignore_offer {
            self.stats.offers_ignored += 1;
            return Ok(Vec::new());
        }
        if collision {
            self.rollback(endpoint).await?;
        }
        if desc.sdp_type == SdpType::Answer && state != SignalingState::HaveLocalOffer {
            // An answer to an offer we no longer have (rolled back): drop it.
            tracing::debug!("ignoring stale answer in state {state:?}");
            return Ok(Vec::new());
        }

        endpoint.set_remote_description(&desc).await?;
        if desc.sdp_type == SdpType::Answer {
            self.pending = None;
        }
        for candidate in std::mem::take(&mut self.pending_candidates) {
            if let Err(err) = endpoint.add_ice_candidate(candidate).await {
                tracing::debug!("queued candidate rejected: {err}");
            }
        }

        if is_offer {
            let answer = endpoint.create_answer().await?;
            endpoint.set_local_description(&answer).await?;
            self.stats.answers_sent += 1;
            return Ok(vec![Signal::description(answer)]);
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Just the signaling state machine of a connection, and what its descriptions settle
    /// (one string stands for an offer's or an answer's media).
    struct Fake {
        state: Mutex<SignalingState>,
        settles: Mutex<&'static str>,
        pending: Mutex<Option<String>>,
        current: Mutex<Option<String>>,
    }

    impl Fake {
        fn new(state: SignalingState) -> Self {
            Self {
                state: Mutex::new(state),
                settles: Mutex::new("audio+video"),
                pending: Mutex::new(None),
                current: Mutex::new(None),
            }
        }

        fn ours(&self, sdp_type: SdpType) -> SessionDescription {
            SessionDescription {
                sdp_type,
                sdp: self.settles.lock().unwrap().to_string(),
            }
        }
    }

    #[async_trait]
    impl SdpEndpoint for Fake {
        async fn create_offer(&self) -> Result<SessionDescription> {
            Ok(self.ours(SdpType::Offer))
        }
        async fn create_answer(&self) -> Result<SessionDescription> {
            Ok(self.ours(SdpType::Answer))
        }
        async fn set_local_description(&self, d: &SessionDescription) -> Result<()> {
            *self.state.lock().unwrap() = match d.sdp_type {
                SdpType::Offer => SignalingState::HaveLocalOffer,
                _ => SignalingState::Stable,
            };
            match d.sdp_type {
                SdpType::Offer => *self.pending.lock().unwrap() = Some(d.sdp.clone()),
                SdpType::Answer => *self.current.lock().unwrap() = Some(d.sdp.clone()),
                _ => *self.pending.lock().unwrap() = None,
            }
            Ok(())
        }
        async fn set_remote_description(&self, d: &SessionDescription) -> Result<()> {
            *self.state.lock().unwrap() = match d.sdp_type {
                SdpType::Offer => SignalingState::HaveRemoteOffer,
                _ => SignalingState::Stable,
            };
            if d.sdp_type == SdpType::Answer {
                *self.current.lock().unwrap() = self.pending.lock().unwrap().take();
            }
            Ok(())
        }
        async fn add_ice_candidate(&self, _: IceCandidate) -> Result<()> {
            Ok(())
        }
        async fn has_remote_description(&self) -> bool {
            true
        }
        async fn signaling_state(&self) -> SignalingState {
            *self.state.lock().unwrap()
        }
        async fn offer_settles_something(&self, offer: &SessionDescription) -> bool {
            self.current.lock().unwrap().as_deref() != Some(offer.sdp.as_str())
        }
    }

    #[tokio::test]
    async fn after_a_rollback_the_polite_side_offers_again_only_what_its_answer_left_out() {
        let pc = Fake::new(SignalingState::Stable);
        let mut n = Negotiator::new(true);
        let t0 = Instant::now();
        assert_eq!(n.on_negotiation_needed_at(&pc, t0).await.unwrap().len(), 1);
        // Glare: we roll back and answer theirs, and our answer carries all we send.
        let answer = n.on_signal_at(&pc, their_offer(), t0).await.unwrap();
        assert_eq!(answer.len(), 1);
        assert_eq!(n.stats().rollbacks, 1);
        // webrtc-rs asks again; an offer would settle what the answer did: none goes out.
        assert!(
            n.on_negotiation_needed_at(&pc, t0)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(n.stats().offers_skipped, 1);
        assert_eq!(pc.signaling_state().await, SignalingState::Stable);
        // Something new to settle (a screen share): offered.
        *pc.settles.lock().unwrap() = "audio+video+screen";
        assert_eq!(n.on_negotiation_needed_at(&pc, t0).await.unwrap().len(), 1);
        assert_eq!(n.stats().offers_sent, 2);
    }

    #[tokio::test]
    async fn a_restart_replaces_an_offer_that_was_lost_but_not_one_under_way() {
        let pc = Fake::new(SignalingState::Stable);
        let mut n = Negotiator::new(true);
        let t0 = Instant::now();
        assert_eq!(n.on_negotiation_needed_at(&pc, t0).await.unwrap().len(), 1);
        // Half a second on, the answer may still come: nothing new.
        let soon = t0 + Duration::from_millis(500);
        assert!(n.reoffer_at(&pc, soon).await.unwrap().is_empty());
        // Long unanswered: rolled back and offered anew.
        let late = t0 + STALE_OFFER + Duration::from_millis(100);
        assert_eq!(n.reoffer_at(&pc, late).await.unwrap().len(), 1);
        assert_eq!(n.stats().rollbacks, 1);
        assert_eq!(n.stats().offers_sent, 2);
    }

    fn their_offer() -> Signal {
        Signal::Description {
            sdp_type: SdpType::Offer,
            sdp: "theirs".into(),
        }
    }

    #[tokio::test]
    async fn the_impolite_side_ignores_a_colliding_offer_until_its_own_looks_lost() {
        let pc = Fake::new(SignalingState::Stable);
        let mut n = Negotiator::new(false);
        let t0 = Instant::now();
        let sent = n.on_negotiation_needed_at(&pc, t0).await.unwrap();
        assert_eq!(sent.len(), 1);
        // A glare: the polite side will roll back and answer ours.
        let at = t0 + Duration::from_millis(300);
        assert!(
            n.on_signal_at(&pc, their_offer(), at)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(n.stats().offers_ignored, 1);
        // No answer for seconds: ours died with a link. Theirs is taken and answered.
        let at = t0 + STALE_OFFER + Duration::from_millis(100);
        let out = n.on_signal_at(&pc, their_offer(), at).await.unwrap();
        assert!(matches!(
            out.as_slice(),
            [Signal::Description {
                sdp_type: SdpType::Answer,
                ..
            }]
        ));
        assert_eq!(n.stats().rollbacks, 1);
        assert_eq!(pc.signaling_state().await, SignalingState::Stable);
    }

    #[test]
    fn signal_json_is_tagged_and_browser_shaped() {
        let s = Signal::Candidate {
            candidate: IceCandidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
                username_fragment: None,
            },
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["kind"], "candidate");
        assert_eq!(json["candidate"]["sdpMid"], "0");
        assert_eq!(json["candidate"]["sdpMLineIndex"], 0);
        let d = Signal::Description {
            sdp_type: SdpType::Offer,
            sdp: "v=0".into(),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"description","sdp_type":"offer","sdp":"v=0"}"#
        );
        assert_eq!(serde_json::from_str::<Signal>(&json).unwrap(), d);
        // What a polite browser page sends to ask for an ICE restart.
        assert_eq!(
            serde_json::from_str::<Signal>(r#"{"kind":"restart"}"#).unwrap(),
            Signal::Restart
        );
    }
}
