//! TURN messages on a byte stream (TCP or TLS, RFC 8656 §3.1): STUN messages carry their
//! length; ChannelData messages are padded to four bytes. Shared by the call's tunnels
//! (client side) and the server's relay listeners.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The length of the TURN message starting with `head` on a stream, padding included:
/// STUN says its length after a 20-byte header; ChannelData after a 4-byte one, padded
/// to four bytes over TCP. `None`: not TURN (the stream is out of step).
pub fn framed_len(head: [u8; 4]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    match head[0] >> 6 {
        0b00 => Some(20 + len),
        0b01 => Some(4 + len.div_ceil(4) * 4),
        _ => None,
    }
}

/// The message without its stream padding (what a datagram carries).
fn unpadded(msg: &[u8]) -> &[u8] {
    if msg.len() >= 4 && msg[0] >> 6 == 0b01 {
        let len = 4 + usize::from(u16::from_be_bytes([msg[2], msg[3]]));
        &msg[..len.min(msg.len())]
    } else {
        msg
    }
}

/// `msg` ready for a stream: ChannelData padded to four bytes.
fn padded(msg: &[u8]) -> Vec<u8> {
    let mut out = msg.to_vec();
    if msg.first().is_some_and(|b| b >> 6 == 0b01) {
        out.resize(msg.len().div_ceil(4) * 4, 0);
    }
    out
}

/// Reads one framed TURN message.
pub async fn read_framed<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await?;
    let len = framed_len(head)
        .ok_or_else(|| std::io::Error::other("not a TURN message on the stream"))?;
    let mut msg = vec![0u8; len];
    msg[..4].copy_from_slice(&head);
    r.read_exact(&mut msg[4..]).await?;
    Ok(unpadded(&msg).to_vec())
}

/// Writes one message to a stream, padded.
pub async fn write_framed<W: AsyncWrite + Unpin>(w: &mut W, msg: &[u8]) -> std::io::Result<()> {
    w.write_all(&padded(msg)).await
}

/// Carries one TURN stream both ways until either side ends: what `outgoing` yields is
/// written framed; each message read is handed to `deliver`, which says whether to go on.
pub async fn carry_stream<S, F, Fut>(
    stream: S,
    mut outgoing: tokio::sync::mpsc::Receiver<Vec<u8>>,
    mut deliver: F,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<bool>>,
{
    let (mut r, mut w) = tokio::io::split(stream);
    let out = async {
        while let Some(msg) = outgoing.recv().await {
            write_framed(&mut w, &msg).await?;
        }
        Ok(())
    };
    let inbound = async {
        while deliver(read_framed(&mut r).await?).await? {}
        Ok(())
    };
    tokio::select! {
        r = out => r,
        r = inbound => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_frames_pad_channel_data_to_four_bytes_and_take_stun_whole() {
        // STUN: 20-byte header + length.
        assert_eq!(framed_len([0x00, 0x01, 0x00, 0x08]), Some(28));
        // ChannelData 0x4000, 5 bytes of data: 4 + 8 on a stream.
        let cd = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5];
        assert_eq!(framed_len([0x40, 0x00, 0x00, 0x05]), Some(12));
        let p = padded(&cd);
        assert_eq!(p.len(), 12);
        assert_eq!(unpadded(&p), &cd);
        assert_eq!(framed_len([0xc0, 0, 0, 0]), None);
    }

    #[tokio::test]
    async fn framed_messages_survive_a_stream_split_anywhere() {
        let stun = {
            let mut m = vec![0x00, 0x01, 0x00, 0x04];
            m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            m.extend_from_slice(&[7; 12]);
            m.extend_from_slice(&[9, 9, 9, 9]);
            m
        };
        let cd = vec![0x40, 0x01, 0x00, 0x03, 1, 2, 3];
        let mut wire = Vec::new();
        write_framed(&mut wire, &stun).await.unwrap();
        write_framed(&mut wire, &cd).await.unwrap();
        // Dribbled one byte at a time, as TCP may deliver it.
        let (mut tx, mut rx) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move { tx.write_all(&wire).await });
        assert_eq!(read_framed(&mut rx).await.unwrap(), stun);
        assert_eq!(read_framed(&mut rx).await.unwrap(), cd);
        writer.await.unwrap().unwrap();
    }
}
