use super::super::probe::Request;
use super::*;
use bytes::Bytes;
use rtc::interceptor::RTPHeaderExtension;
use rtc::shared::TransportContext;

const MEDIA: u32 = 0x1111;
const REPAIR: u32 = 0x2222;
const FEC_PT: u8 = 118;
const TWCC_ID: u8 = 5;

fn packet(seq: u16, marker: bool) -> Rtp {
    let mut p = Rtp::default();
    p.header.version = 2;
    p.header.payload_type = 102;
    p.header.ssrc = MEDIA;
    p.header.sequence_number = seq;
    p.header.timestamp = 3000 * u32::from(seq / 4);
    p.header.marker = marker;
    // Different lengths and contents, as a frame's packets are.
    p.payload = Bytes::from(
        (0..(900 + usize::from(seq % 7) * 31))
            .map(|i| (i as u16 ^ seq.wrapping_mul(31)) as u8)
            .collect::<Vec<u8>>(),
    );
    p
}

fn tagged(p: Rtp) -> TaggedPacket {
    TaggedPacket {
        now: Instant::now(),
        transport: TransportContext::default(),
        message: AttributedPacket::new(Packet::Rtp(p)),
    }
}

fn rtp(t: &TaggedPacket) -> &Rtp {
    match &t.message.packet {
        Packet::Rtp(p) => p,
        _ => panic!("not RTP"),
    }
}

/// What the TWCC sender does wire-ward of the FEC encoder: a transport-wide number.
fn numbered(mut p: Rtp, n: u16) -> Rtp {
    if !p.header.extension {
        p.header.extension = true;
        p.header.extension_profile = 0xBEDE;
    }
    p.header
        .set_extension(TWCC_ID, Bytes::copy_from_slice(&n.to_be_bytes()))
        .unwrap();
    p
}

fn stream() -> StreamInfo {
    StreamInfo {
        ssrc: MEDIA,
        ssrc_fec: Some(REPAIR),
        payload_type_fec: Some(FEC_PT),
        rtp_header_extensions: vec![RTPHeaderExtension {
            uri: TWCC_URI.to_owned(),
            id: u16::from(TWCC_ID),
        }],
        ..Default::default()
    }
}

/// Sends `count` media packets (frames of four) through a sender on a path losing `loss`,
/// and returns everything that left, numbered as the wire would carry it.
fn sent(loss: f64, count: u16) -> (Arc<Repair>, Vec<Rtp>) {
    let state = Arc::new(Repair::default());
    state.set_loss(loss);
    let mut sender = FecSender::new(Arc::clone(&state), Arc::default());
    sender.bind_local_stream(&stream());
    let mut out = Vec::new();
    for seq in 0..count {
        sender
            .handle_write(tagged(packet(seq, seq % 4 == 3)))
            .unwrap();
        while let Some(t) = sender.poll_write() {
            let n = out.len() as u16;
            out.push(numbered(rtp(&t).clone(), n));
        }
    }
    (state, out)
}

#[test]
fn a_clean_path_gets_no_protection_and_a_lossy_one_a_share_that_grows_with_its_loss() {
    assert_eq!(protection(0.0), 0.0);
    assert_eq!(
        protection(0.005),
        0.0,
        "half a percent: retransmission will do"
    );
    assert!((protection(0.10) - 0.25).abs() < 1e-9);
    assert!(protection(0.02) >= MIN_SHARE);
    assert!(protection(0.05) < protection(0.10));
    assert_eq!(
        protection(0.6),
        MAX_SHARE,
        "never more repair than half the media"
    );
}

#[test]
fn a_clean_path_sends_no_repair_packets() {
    let (state, out) = sent(0.0, 40);
    assert_eq!(out.len(), 40);
    assert!(out.iter().all(|p| p.header.ssrc == MEDIA));
    assert_eq!(state.sent.load(Ordering::Relaxed), 0);
    assert_eq!(state.media_share(), 1.0);
}

#[test]
fn at_ten_percent_loss_a_quarter_more_packets_leave_on_the_repair_stream() {
    let (state, out) = sent(0.10, 40);
    let repairs: Vec<&Rtp> = out.iter().filter(|p| p.header.ssrc == REPAIR).collect();
    // Frames of four: one repair each (4 x 0.25), after the frame's last packet.
    assert_eq!(repairs.len(), 10);
    assert!(repairs.iter().all(|p| p.header.payload_type == FEC_PT));
    assert_eq!(state.sent.load(Ordering::Relaxed), 10);
    assert!((state.media_share() - 0.8).abs() < 1e-9);
    for pair in out.windows(2) {
        if pair[1].header.ssrc == REPAIR {
            assert!(pair[0].header.marker, "repair follows the end of a frame");
        }
    }
}

#[test]
fn small_frames_share_a_block_and_no_block_waits_past_three_frames() {
    let mut blocks = Blocks::default();
    let share = protection(0.02); // 0.1: a frame of one packet earns no repair alone
    assert_eq!(blocks.push(&packet(0, true), share), None);
    assert_eq!(blocks.push(&packet(1, true), share), None);
    let (block, repairs) = blocks.push(&packet(2, true), share).expect("third frame");
    assert_eq!(block.len(), 3);
    assert_eq!(repairs, 1);
    // A big frame is split so its mask stays short.
    let mut big = None;
    for seq in 3..3 + MAX_BLOCK as u16 {
        big = blocks.push(&packet(seq, false), share);
    }
    assert_eq!(big.map(|(b, _)| b.len()), Some(MAX_BLOCK));
}

#[test]
fn a_gap_in_the_sequence_starts_a_new_block() {
    let mut blocks = Blocks::default();
    let share = protection(0.10);
    assert_eq!(blocks.push(&packet(0, false), share), None);
    assert_eq!(blocks.push(&packet(1, false), share), None);
    assert_eq!(blocks.push(&packet(5, false), share), None);
    assert_eq!(blocks.push(&packet(6, false), share), None);
    let (block, _) = blocks
        .push(&packet(7, true), share)
        .expect("closes at the marker");
    let seqs: Vec<u16> = block.iter().map(|p| p.header.sequence_number).collect();
    assert_eq!(seqs, vec![5, 6, 7], "a mask cannot describe 0, 1, 5, 6, 7");
}

#[test]
fn a_lost_packet_is_rebuilt_at_the_receiver_from_the_repair_stream_without_a_retransmission() {
    let (_, wire) = sent(0.10, 16);
    let lost = wire
        .iter()
        .position(|p| p.header.ssrc == MEDIA && p.header.sequence_number == 6)
        .unwrap();
    let state = Arc::new(Repair::default());
    let mut receiver = FecReceiver::new(Arc::clone(&state));
    receiver.bind_remote_stream(&stream());
    let mut delivered: Vec<(Rtp, bool)> = Vec::new();
    for (i, p) in wire.iter().enumerate() {
        if i == lost {
            continue;
        }
        receiver.handle_read(tagged(p.clone())).unwrap();
        while let Some(t) = receiver.poll_read() {
            let fec = t.message.get(&Attribute::RecoveredByFec).is_some();
            delivered.push((rtp(&t).clone(), fec));
        }
    }
    // Repair packets go on too, for the transport-wide feedback to report.
    let repairs = wire.iter().filter(|p| p.header.ssrc == REPAIR).count();
    assert_eq!(
        delivered
            .iter()
            .filter(|(p, _)| p.header.ssrc == REPAIR)
            .count(),
        repairs
    );
    delivered.retain(|(p, _)| p.header.ssrc == MEDIA);
    let seqs: Vec<u16> = {
        let mut s: Vec<u16> = delivered
            .iter()
            .map(|(p, _)| p.header.sequence_number)
            .collect();
        s.sort_unstable();
        s
    };
    assert_eq!(
        seqs,
        (0..16).collect::<Vec<_>>(),
        "every packet, the lost one too"
    );
    let (rebuilt, _) = delivered.iter().find(|(_, fec)| *fec).expect("one rebuilt");
    let original = packet(6, false);
    assert_eq!(rebuilt.header.sequence_number, 6);
    assert_eq!(rebuilt.header.timestamp, original.header.timestamp);
    assert_eq!(rebuilt.header.marker, original.header.marker);
    assert_eq!(rebuilt.payload, original.payload, "the same bytes");
    assert!(
        rebuilt.header.extensions.iter().all(|e| e.id != TWCC_ID),
        "no transport-wide number: the feedback reports it lost, as the path lost it"
    );
    assert_eq!(state.recovered.load(Ordering::Relaxed), 1);
}

#[test]
fn the_transport_wide_number_is_taken_off_before_decoding_and_nothing_else() {
    let mut with_mid = packet(3, true);
    with_mid.header.extension = true;
    with_mid.header.extension_profile = 0xBEDE;
    with_mid
        .header
        .set_extension(1, Bytes::from_static(b"0"))
        .unwrap();
    for original in [packet(3, true), with_mid] {
        let wire = numbered(original.clone(), 77);
        let back = as_protected(&wire, Some(TWCC_ID));
        assert_eq!(
            rtc::shared::marshal::Marshal::marshal(&back).unwrap(),
            rtc::shared::marshal::Marshal::marshal(&original).unwrap()
        );
    }
}

#[test]
fn the_encoders_get_the_estimate_less_protection_and_retransmissions() {
    let repair = Repair::default();
    assert_eq!(
        repair.media_rate(1_000_000.0),
        1_000_000.0,
        "a clean path: all of it"
    );
    repair.set_retransmit_bps(150_000.0);
    assert_eq!(repair.media_rate(1_000_000.0), 850_000.0);
    // FEC bound and a path losing 10 %: a quarter more packets are repair.
    let (state, _) = sent(0.10, 4);
    state.set_retransmit_bps(100_000.0);
    assert!((state.media_rate(1_000_000.0) - 700_000.0).abs() < 1.0);
    // A storm of retransmissions leaves the encoders half.
    state.set_retransmit_bps(900_000.0);
    assert!((state.media_rate(1_000_000.0) - 400_000.0).abs() < 1.0);
}

#[test]
fn a_probe_asked_for_leaves_as_repair_packets_after_the_next_ordinary_frame() {
    let probing = Arc::new(Probing::default());
    let mut sender = FecSender::new(Arc::new(Repair::default()), Arc::clone(&probing));
    sender.bind_local_stream(&stream());
    let mut send = |seq: u16, marker: bool| {
        sender.handle_write(tagged(packet(seq, marker))).unwrap();
        std::iter::from_fn(|| sender.poll_write())
            .map(|t| rtp(&t).clone())
            .collect::<Vec<Rtp>>()
    };
    // Frames of two packets, then the request.
    for seq in 0..8 {
        send(seq, seq % 2 == 1);
    }
    probing.ask(Request {
        id: 1,
        rate_bps: 1_000_000.0,
        packets: 5,
    });
    // A keyframe of eight packets: the probe waits.
    let keyframe: Vec<Rtp> = (8..16).flat_map(|seq| send(seq, seq == 15)).collect();
    assert!(keyframe.iter().all(|p| p.header.ssrc == MEDIA));
    assert_eq!(probing.cluster(), None);
    // The next frame of two: five repair packets after it, named in the cluster.
    let frame: Vec<Rtp> = (16..18).flat_map(|seq| send(seq, seq == 17)).collect();
    let repairs: Vec<u16> = frame
        .iter()
        .filter(|p| p.header.ssrc == REPAIR)
        .map(|p| p.header.sequence_number)
        .collect();
    assert_eq!(repairs.len(), 5);
    let cluster = probing.cluster().expect("the probe was sent");
    assert_eq!((cluster.id, cluster.ssrc), (1, REPAIR));
    assert_eq!(cluster.seqs, repairs);
    assert_eq!(probing.rate_of(REPAIR, repairs[0]), Some(1_000_000.0));
    assert_eq!(probing.rate_of(MEDIA, 16), None);
}
