//! Simulcast through Janus, the messages (pure): how our layers are described to Janus
//! and how a subscriber picks one.
//!
//! Janus 1.1 takes simulcast as rid (`a=rid` + `a=simulcast`, each packet naming its
//! layer in the mid and rid header extensions) or by SSRC (`a=ssrc-group:SIM`, as
//! Chrome's older simulcast). webrtc-rs 0.21 keeps several encodings of a track only
//! when each has a rid, but writes no rid or mid extension into the packets itself, so
//! Janus would drop them ("unknown SSRC"). Described by SSRC instead, Janus knows every
//! layer from the offer and needs nothing in the packets: the offer Janus gets has the
//! rid lines swapped for a SIM group (smallest layer first: Janus's substream 0).

use serde_json::{Value, json};

use super::videoroom::split_sections;

/// `sdp` (our offer) with the m-section of track `track_id` describing its layers by
/// SSRC (`ssrcs` smallest first) instead of by rid; other sections unchanged.
pub fn with_ssrc_simulcast(sdp: &str, track_id: &str, ssrcs: &[u32]) -> String {
    let mut out = String::with_capacity(sdp.len() + 256);
    for section in split_sections(sdp) {
        let msid = section
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=msid:"));
        let ours = msid.is_some_and(|m| m.split_whitespace().nth(1) == Some(track_id));
        let (Some(msid), true) = (msid, ours) else {
            out.push_str(section);
            continue;
        };
        let eol = if section.contains("\r\n") {
            "\r\n"
        } else {
            "\n"
        };
        for line in section.split_inclusive('\n') {
            if !(line.starts_with("a=rid:") || line.starts_with("a=simulcast:")) {
                out.push_str(line);
            }
        }
        if !out.ends_with('\n') {
            out.push_str(eol);
        }
        let group: Vec<String> = ssrcs.iter().map(u32::to_string).collect();
        out.push_str(&format!("a=ssrc-group:SIM {}{eol}", group.join(" ")));
        for s in ssrcs {
            out.push_str(&format!("a=ssrc:{s} cname:{track_id}{eol}"));
            out.push_str(&format!("a=ssrc:{s} msid:{msid}{eol}"));
        }
    }
    out
}

/// Asks Janus for simulcast layer `substream` (0 = smallest) of the stream in the
/// subscription's m-section `mid`. Janus switches at the layer's next keyframe and asks
/// the publisher for one.
pub fn configure_substream(mid: &str, substream: u8) -> Value {
    json!({
        "request": "configure",
        "streams": [{ "mid": mid, "substream": substream }],
    })
}

/// A `simulcast` event of the subscriber handle: the layer now relayed in `mid`.
pub fn relayed_substream(data: &Value) -> Option<(String, u8)> {
    let mid = data.get("mid")?.as_str()?.to_owned();
    let s = data.get("substream")?.as_u64()?;
    Some((mid, u8::try_from(s).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=msid:s m1-mic\r\n\
        a=ssrc:5 cname:s\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:1\r\na=msid:camera m1-camera\r\n\
        a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n";

    #[test]
    fn our_layers_reach_janus_as_an_ssrc_sim_group_smallest_first() {
        let out = with_ssrc_simulcast(OFFER, "m1-camera", &[11, 22, 33]);
        let video = &out[out.find("m=video").unwrap()..];
        assert!(
            !video.contains("a=rid:") && !video.contains("a=simulcast"),
            "{out}"
        );
        assert!(video.contains("a=ssrc-group:SIM 11 22 33\r\n"), "{out}");
        for s in [11, 22, 33] {
            assert!(video.contains(&format!("a=ssrc:{s} msid:camera m1-camera\r\n")));
            assert!(video.contains(&format!("a=ssrc:{s} cname:m1-camera\r\n")));
        }
        assert_eq!(
            &out[..out.find("m=video").unwrap()],
            &OFFER[..OFFER.find("m=video").unwrap()],
            "the audio section is untouched"
        );
    }

    #[test]
    fn an_offer_without_that_track_is_unchanged() {
        assert_eq!(with_ssrc_simulcast(OFFER, "m2-camera", &[1, 2]), OFFER);
    }

    #[test]
    fn a_subscriber_asks_for_a_layer_by_mid_and_reads_the_switch() {
        assert_eq!(
            configure_substream("3", 0),
            json!({"request":"configure","streams":[{"mid":"3","substream":0}]})
        );
        let ev = json!({"videoroom":"event","room":1,"mid":"3","substream":2});
        assert_eq!(relayed_substream(&ev), Some(("3".into(), 2)));
        assert_eq!(relayed_substream(&json!({"videoroom":"event"})), None);
    }
}
