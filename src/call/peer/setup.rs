//! Building a connection: the codecs we offer and the interceptor chain.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{CongestionControlBuilder, NackResponderBuilder, Slot, TwccSenderBuilder};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_FLEX_FEC03, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use webrtc::peer_connection::{
    MediaEngine, Registry, configure_rtcp_reports, configure_simulcast_extension_headers,
    configure_twcc_receiver_only,
};

use super::coverage::{NoteCoverage, SharedCoverage};
use super::estimate::Estimator;
use super::fec::{FecReceiver, FecSender, Repair};
use super::numbered::RepairFlows;
use super::pacing::Pacing;
use super::probe::Probing;
use super::types::PeerConfig;
use super::wrapped::Wrapped;
use crate::call::error::Result;

/// H.264 payload types: (profile-level-id, primary PT, RTX PT). Both Constrained Baseline
/// spellings, because fmtp matching compares the profile bytes (see platform notes).
pub(super) const H264_CODECS: [(&str, u8, u8); 2] = [("42e01f", 102, 103), ("42001f", 106, 107)];
pub(super) const OPUS_PT: u8 = 111;
/// FlexFEC-03 repair packets (`fec.rs`).
pub(super) const FLEXFEC_PT: u8 = 118;
/// NACKs for missing packets go out this often; video behind a gap waits for the
/// retransmission as long as the round trip allows (`reorder::wait_for`).
pub(super) const NACK_INTERVAL: Duration = Duration::from_millis(20);

pub(super) fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

pub(super) fn h264_codec(profile_level_id: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: format!(
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile_level_id}"
        ),
        rtcp_feedback: vec![
            feedback("nack", ""),
            feedback("nack", "pli"),
            feedback("ccm", "fir"),
        ],
    }
}

pub(super) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        // usedtx: a browser leaves its silence out for us too (our answers get it in
        // `Peer::create_answer`: webrtc-rs answers with the offer's fmtp).
        sdp_fmtp_line: "minptime=10;useinbandfec=1;usedtx=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// webrtc-rs's default chain (NACK responder, RR/SR, TWCC receiver), plus send-side
/// congestion control (`estimate.rs`: GCC's delay half, our loss half) fed by the remote's
/// transport-wide feedback, the pacer at 1.5 times its estimate (`pacing.rs`), and FEC
/// both ways (`fec.rs`; it binds only to streams whose remote took `flexfec-03`).
pub(super) fn interceptors(
    me: &mut MediaEngine,
    config: &PeerConfig,
    fec: &Arc<Repair>,
) -> Result<Registry> {
    for parameter in ["", "pli"] {
        me.register_feedback(
            RTCPFeedback {
                typ: "nack".into(),
                parameter: parameter.into(),
            },
            RtpCodecKind::Video,
        );
    }
    // The NACK generator is ours (`nack.rs`), added with the connection's shared state.
    let registry = Registry::new().with(Slot::NackResponder, NackResponderBuilder::new().build());
    configure_simulcast_extension_headers(me)?;
    // Registers transport-cc feedback and its header extension, and reports what we receive.
    let registry = configure_twcc_receiver_only(registry, me)?;
    let (min, start, max) = config.estimate_bounds();
    let probing = Arc::new(Probing::default());
    let registry = registry
        .with(Slot::CongestionControl, {
            let coverage = SharedCoverage::default();
            let estimator = Estimator::new(start, min, max)
                .reporting_loss_to(Arc::clone(fec))
                .probing_with(Arc::clone(&probing))
                .minding(Arc::clone(&coverage));
            Wrapped {
                inner: Wrapped {
                    inner: CongestionControlBuilder::new(estimator).build(),
                    around: RepairFlows(config.fec),
                },
                around: NoteCoverage(coverage),
            }
        })
        .with(
            Slot::FecEncoder,
            FecSender::new(Arc::clone(fec), Arc::clone(&probing)),
        )
        .with(Slot::FecDecoder, FecReceiver::new(Arc::clone(fec)))
        .with(
            Slot::TwccSender,
            Wrapped {
                inner: TwccSenderBuilder::new().build(),
                around: RepairFlows(config.fec),
            },
        )
        .with(Slot::Pacer, Pacing::new(start, Arc::clone(fec), probing));
    Ok(configure_rtcp_reports(registry))
}

/// `fec`: offer FlexFEC-03 for video (not to Janus, which has no use for it).
pub(super) fn media_engine(fec: bool) -> Result<MediaEngine> {
    let mut me = MediaEngine::default();
    if fec {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_FLEX_FEC03.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: "repair-window=10000000".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: FLEXFEC_PT,
            },
            RtpCodecKind::Video,
        )?;
    }
    for (profile, pt, rtx_pt) in H264_CODECS {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: h264_codec(profile),
                payload_type: pt,
            },
            RtpCodecKind::Video,
        )?;
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_RTX.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: format!("apt={pt}"),
                    rtcp_feedback: vec![],
                },
                payload_type: rtx_pt,
            },
            RtpCodecKind::Video,
        )?;
    }
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    Ok(me)
}

/// Resolving browsers' `.local` candidates needs a multicast socket; where none can
/// be had (no multicast route, e.g. a namespace with only `lo`) we go without mDNS
/// instead of failing every connection.
pub(super) fn mdns_mode() -> MulticastDnsMode {
    static MODE: OnceLock<MulticastDnsMode> = OnceLock::new();
    *MODE.get_or_init(|| match rtc::mdns::MulticastSocket::new().into_std() {
        Ok(_) => MulticastDnsMode::QueryOnly,
        Err(e) => {
            tracing::info!("mDNS off: no multicast socket ({e})");
            MulticastDnsMode::Disabled
        }
    })
}
