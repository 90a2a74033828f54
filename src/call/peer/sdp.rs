//! Reading SDP for the webrtc-rs workarounds. Pure functions of the text.

use std::collections::HashSet;

use super::types::MediaKind;

/// The SDP with every `a=setup:active|passive` saying `setup` instead.
pub(super) fn with_dtls_setup(sdp: &str, setup: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| {
            let bare = line.trim_end();
            if bare == "a=setup:active" || bare == "a=setup:passive" {
                format!("a=setup:{setup}{}", &line[bare.len()..])
            } else {
                line.to_owned()
            }
        })
        .collect()
}

/// The SDP with a session-level `a=msid-semantic: WMS *` if it has none. webrtc-rs 0.21
/// writes it in answers but not in a first offer, and other stacks then ignore the
/// offer's `a=msid` lines and make up their own stream and track ids.
pub(super) fn with_msid_semantic(sdp: &str) -> String {
    if sdp.lines().any(|l| l.starts_with("a=msid-semantic")) {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + 28);
    let mut added = false;
    for line in sdp.split_inclusive('\n') {
        if !added && line.starts_with("m=") {
            out.push_str("a=msid-semantic: WMS *\r\n");
            added = true;
        }
        out.push_str(line);
    }
    out
}

/// The SDP with `usedtx=1` on every Opus format: webrtc-rs answers with the offer's
/// own fmtp, and a browser leaves its silence out only when our description asks.
pub(super) fn with_opus_dtx(sdp: &str) -> String {
    let mut opus: Vec<String> = Vec::new();
    let mut in_audio = false;
    let mut out = String::with_capacity(sdp.len() + 32);
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end();
        if let Some(m) = bare.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
            opus.clear();
        } else if in_audio
            && let Some((pt, codec)) = bare
                .strip_prefix("a=rtpmap:")
                .and_then(|r| r.split_once(' '))
            && codec.to_ascii_lowercase().starts_with("opus/")
        {
            opus.push(pt.to_owned());
        } else if let Some((pt, params)) =
            bare.strip_prefix("a=fmtp:").and_then(|r| r.split_once(' '))
            && opus.iter().any(|p| p == pt)
            && !params.split(';').any(|p| p.trim().starts_with("usedtx="))
        {
            out.push_str(&format!(
                "a=fmtp:{pt} {params};usedtx=1{}",
                &line[bare.len()..]
            ));
            continue;
        }
        out.push_str(line);
    }
    out
}

/// The audio and video m-sections of an SDP: their kind and their lines after the m-line.
pub(super) fn media_sections(sdp: &str) -> impl Iterator<Item = (MediaKind, std::str::Lines<'_>)> {
    sdp.split("\nm=").skip(1).filter_map(|section| {
        let mut lines = section.lines();
        let kind = match lines.next()?.split_whitespace().next()? {
            "video" => MediaKind::Video,
            "audio" => MediaKind::Audio,
            _ => return None,
        };
        Some((kind, lines))
    })
}

/// Per kind, whether the SDP's first m-section of that kind lists a codec we take (by
/// name, as webrtc-rs falls back to: H.264 for video, Opus for audio).
pub(super) fn first_sections_usable(sdp: &str) -> Vec<(MediaKind, bool)> {
    let mut out: Vec<(MediaKind, bool)> = Vec::new();
    for (kind, mut lines) in media_sections(sdp) {
        if out.iter().any(|(k, _)| *k == kind) {
            continue;
        }
        let ours = match kind {
            MediaKind::Video => "h264",
            MediaKind::Audio => "opus",
        };
        let usable = lines.any(|l| {
            l.trim_end()
                .strip_prefix("a=rtpmap:")
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|encoding| encoding.split('/').next())
                .is_some_and(|name| name.eq_ignore_ascii_case(ours))
        });
        out.push((kind, usable));
    }
    out
}

/// (mid, kind) of the SDP's audio and video m-sections.
pub(super) fn section_kinds(sdp: &str) -> Vec<(String, MediaKind)> {
    media_sections(sdp)
        .filter_map(|(kind, mut lines)| {
            lines
                .find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_owned))
                .map(|mid| (mid, kind))
        })
        .collect()
}

/// Track ids (from `a=msid`) of the m-sections in which the SDP's author sends media.
pub(super) fn sending_track_ids(sdp: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    for section in sdp.split("\nm=").skip(1) {
        let mut lines = section.lines();
        let port_zero = lines
            .next()
            .and_then(|m| m.split_whitespace().nth(1))
            .is_some_and(|port| port == "0");
        let mut sends = true;
        let mut track = None;
        for line in lines {
            let line = line.trim_end();
            match line {
                "a=recvonly" | "a=inactive" => sends = false,
                _ => {
                    if let Some(msid) = line.strip_prefix("a=msid:") {
                        track = msid.split_whitespace().nth(1).map(str::to_owned);
                    }
                }
            }
        }
        if sends
            && !port_zero
            && let Some(track) = track
        {
            ids.insert(track);
        }
    }
    ids
}

/// What an offer would settle, per m-section: kind, rejected or not, mid, direction, the
/// tracks sent (msid, SSRCs) and the ICE credentials. Codec lists and the DTLS setup
/// differ between an offer and an answer that settle the same thing, so they are left out.
fn settles(sdp: &str) -> Vec<Vec<String>> {
    sdp.split("\nm=")
        .skip(1)
        .map(|section| {
            let mut lines = section.lines();
            let m: Vec<&str> = lines
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            let mut out = vec![
                m.first().copied().unwrap_or_default().to_owned(),
                (m.get(1) == Some(&"0")).to_string(),
            ];
            for line in lines.map(str::trim_end) {
                let kept = ["a=mid:", "a=msid:", "a=ice-ufrag:", "a=ice-pwd:"]
                    .iter()
                    .any(|p| line.starts_with(p))
                    || ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"].contains(&line);
                if kept {
                    out.push(line.to_owned());
                } else if let Some(ssrc) = line.strip_prefix("a=ssrc:") {
                    out.push(format!(
                        "ssrc {}",
                        ssrc.split_whitespace().next().unwrap_or("")
                    ));
                }
            }
            out.sort();
            out.dedup();
            out
        })
        .collect()
}

/// Whether `offer` would settle nothing that `current` (the description in force, ours)
/// has not: webrtc-rs asks to negotiate again after a rollback even when the answer it
/// gave already carried everything.
pub(super) fn settles_nothing_new(offer: &str, current: &str) -> bool {
    settles(offer) == settles(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msid_parsing_follows_direction() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\na=sendrecv\r\na=msid:s a\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:1\r\na=recvonly\r\na=msid:s b\r\n\
                   m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=msid:s c\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:3\r\na=sendonly\r\na=msid:s d\r\n";
        let ids = sending_track_ids(sdp);
        assert_eq!(
            ids,
            HashSet::from(["a".to_owned(), "d".to_owned()]),
            "only sending, non-rejected sections count"
        );
    }

    #[test]
    fn an_offer_without_msid_semantic_gets_one_before_its_first_media_section() {
        let offer =
            "v=0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP 111\r\na=msid:s t\r\n";
        let fixed = with_msid_semantic(offer);
        assert_eq!(
            fixed,
            "v=0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS *\r\n\
             m=audio 9 UDP 111\r\na=msid:s t\r\n"
        );
        assert_eq!(with_msid_semantic(&fixed), fixed, "once is enough");
    }

    #[test]
    fn opus_formats_ask_for_dtx_and_nothing_else_changes() {
        let sdp = "v=0\r\nm=audio 9 x 111 0\r\na=rtpmap:111 opus/48000/2\r\n\
                   a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n\
                   a=fmtp:0 x=1\r\nm=video 9 x 111\r\na=rtpmap:111 H264/90000\r\n\
                   a=fmtp:111 packetization-mode=1\r\n";
        let fixed = with_opus_dtx(sdp);
        assert_eq!(
            fixed,
            sdp.replace("useinbandfec=1\r\n", "useinbandfec=1;usedtx=1\r\n")
        );
        assert_eq!(with_opus_dtx(&fixed), fixed, "once is enough");
        let declined = sdp.replace("useinbandfec=1", "usedtx=0");
        assert_eq!(with_opus_dtx(&declined), declined, "a stated choice stands");
    }

    #[test]
    fn dtls_setup_is_rewritten_in_place() {
        let sdp = "v=0\r\na=setup:active\r\nm=audio 9 x 0\r\na=setup:passive\r\na=setupx\r\n";
        assert_eq!(
            with_dtls_setup(sdp, "passive"),
            "v=0\r\na=setup:passive\r\nm=audio 9 x 0\r\na=setup:passive\r\na=setupx\r\n"
        );
    }

    /// An answer of ours: audio and video sent, the data channel.
    const ANSWER: &str = "v=0\r\na=group:BUNDLE 0 1 2\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:u1\r\na=ice-pwd:p1\r\na=setup:active\r\n\
        a=mid:0\r\na=msid:s s-mic\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\na=ssrc:11 cname:x\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=ice-ufrag:u1\r\na=ice-pwd:p1\r\na=setup:active\r\n\
        a=mid:1\r\na=msid:s s-cam\r\na=sendrecv\r\na=rtpmap:102 H264/90000\r\na=ssrc:22 cname:x\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=sendrecv\r\n";

    #[test]
    fn an_offer_that_only_restates_the_answer_settles_nothing_new() {
        // The same media, with the offer's own codec list and DTLS setup.
        let offer = ANSWER
            .replace("a=setup:active", "a=setup:actpass")
            .replace("SAVPF 102\r\n", "SAVPF 102 106 103 107\r\n")
            .replace(
                "a=rtpmap:102 H264/90000\r\n",
                "a=rtpmap:102 H264/90000\r\na=rtpmap:106 H264/90000\r\n",
            );
        assert!(settles_nothing_new(&offer, ANSWER));
    }

    #[test]
    fn new_credentials_tracks_directions_or_sections_are_something_to_settle() {
        for changed in [
            ANSWER.replace("ice-ufrag:u1", "ice-ufrag:u2"),
            ANSWER.replace("s s-cam", "s s-screen"),
            ANSWER.replace("a=ssrc:22", "a=ssrc:33"),
            ANSWER.replacen("a=sendrecv", "a=recvonly", 1),
            ANSWER.replace("m=video 9", "m=video 0"),
            format!("{ANSWER}m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:3\r\na=sendonly\r\n"),
        ] {
            assert!(!settles_nothing_new(&changed, ANSWER), "{changed}");
        }
    }
}
