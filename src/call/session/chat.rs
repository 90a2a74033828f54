//! The chat channel with one peer, as a pure state machine: it says what to send.

use serde::{Deserialize, Serialize};

/// Messages on the "chat" data channel.
///
/// A negotiated channel can open on one side before the other side's stack has
/// registered it, and whatever arrives in that gap is dropped. So each side says
/// `hello` until it hears anything back (answering every `hello` with `ack`), and
/// chat waits until the other side has been heard: nothing written is lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DataMessage {
    Hello,
    Ack,
    Chat { text: String },
}

impl DataMessage {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("DataMessage serialises")
    }
}

/// One peer's end of the handshake and the chat held until it completes.
#[derive(Debug, Default)]
pub(super) struct ChatLink {
    open: bool,
    /// We have received something: the other side's channel works.
    heard: bool,
    /// Frames waiting for that (in the order written).
    held: Vec<String>,
}

/// A frame to send on the channel.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Frame {
    /// Hello or ack: repeated by the handshake itself if lost.
    Handshake(String),
    /// Chat: kept until it is sent.
    Chat(String),
}

impl Frame {
    pub(super) fn json(&self) -> &str {
        match self {
            Self::Handshake(j) | Self::Chat(j) => j,
        }
    }
}

/// What a received frame said.
#[derive(Debug, PartialEq)]
pub(super) enum Received {
    Chat(String),
    /// Handshake only.
    Nothing,
    Unknown(String),
}

impl ChatLink {
    /// The channel opened on our side: say hello.
    pub(super) fn opened(&mut self) -> Frame {
        self.open = true;
        Frame::Handshake(DataMessage::Hello.to_json())
    }

    /// A hello to repeat on the periodic tick, until the other side is heard.
    pub(super) fn hello_due(&self) -> Option<Frame> {
        (self.open && !self.heard).then(|| Frame::Handshake(DataMessage::Hello.to_json()))
    }

    /// A frame arrived: what to send now (everything held, once the other side is first
    /// heard; an ack for a hello), and what it said.
    pub(super) fn received(&mut self, frame: &str) -> (Vec<Frame>, Received) {
        let mut send = Vec::new();
        if !self.heard {
            self.heard = true;
            send = self.flush();
        }
        let said = match serde_json::from_str::<DataMessage>(frame) {
            Ok(DataMessage::Hello) => {
                send.push(Frame::Handshake(DataMessage::Ack.to_json()));
                Received::Nothing
            }
            Ok(DataMessage::Ack) => Received::Nothing,
            Ok(DataMessage::Chat { text }) => Received::Chat(text),
            Err(e) => Received::Unknown(e.to_string()),
        };
        (send, said)
    }

    /// Chat to send: the frame to send now, or None while it is held.
    pub(super) fn chat(&mut self, text: &str) -> Option<Frame> {
        let frame = DataMessage::Chat {
            text: text.to_owned(),
        }
        .to_json();
        if self.heard && self.held.is_empty() {
            return Some(Frame::Chat(frame));
        }
        self.held.push(frame);
        None
    }

    /// A send failed: a chat frame waits for the next [`flush`](Self::flush).
    pub(super) fn failed(&mut self, frame: Frame) {
        if let Frame::Chat(json) = frame {
            self.held.push(json);
        }
    }

    /// What is held, once the other side has been heard (on the periodic tick).
    pub(super) fn flush(&mut self) -> Vec<Frame> {
        if self.heard {
            self.held.drain(..).map(Frame::Chat).collect()
        } else {
            Vec::new()
        }
    }
}

/// A chat line relayed through the signaling server (SFU rooms): `{"kind": "chat",
/// "text": ...}` beside the negotiation signals.
pub(crate) fn relayed(text: &str) -> serde_json::Value {
    serde_json::json!({ "kind": "chat", "text": text })
}

/// The text of a relayed chat line, if `payload` is one.
pub(crate) fn relayed_text(payload: &serde_json::Value) -> Option<String> {
    if payload.get("kind")?.as_str()? != "chat" {
        return None;
    }
    payload.get("text")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(text: &str) -> Frame {
        Frame::Chat(DataMessage::Chat { text: text.into() }.to_json())
    }

    fn handshake(m: DataMessage) -> Frame {
        Frame::Handshake(m.to_json())
    }

    #[test]
    fn chat_written_before_the_other_side_is_heard_waits_and_then_goes_in_order() {
        let mut link = ChatLink::default();
        assert_eq!(link.opened(), handshake(DataMessage::Hello));
        assert_eq!(link.chat("one"), None);
        assert_eq!(link.chat("two"), None);
        assert_eq!(link.flush(), vec![], "nothing before we hear them");
        assert!(link.hello_due().is_some(), "still saying hello");
        let (send, said) = link.received(&DataMessage::Ack.to_json());
        assert_eq!(send, vec![chat("one"), chat("two")]);
        assert_eq!(said, Received::Nothing);
        assert_eq!(link.hello_due(), None, "heard: no more hellos");
        assert_eq!(link.chat("three"), Some(chat("three")));
    }

    #[test]
    fn a_hello_is_answered_and_chat_is_read() {
        let mut link = ChatLink::default();
        link.opened();
        let (send, said) = link.received(&DataMessage::Hello.to_json());
        assert_eq!(send, vec![handshake(DataMessage::Ack)]);
        assert_eq!(said, Received::Nothing);
        let (send, said) = link.received(chat("hi").json());
        assert!(send.is_empty());
        assert_eq!(said, Received::Chat("hi".into()));
        assert!(matches!(
            link.received("{\"type\":\"x\"}").1,
            Received::Unknown(_)
        ));
    }

    #[test]
    fn a_failed_send_is_kept_and_nothing_overtakes_it() {
        let mut link = ChatLink::default();
        link.opened();
        link.received(&DataMessage::Ack.to_json());
        let frame = link.chat("lost once").unwrap();
        link.failed(frame);
        link.failed(handshake(DataMessage::Ack));
        assert_eq!(link.chat("later"), None, "queued behind the held one");
        assert_eq!(link.flush(), vec![chat("lost once"), chat("later")]);
    }

    #[test]
    fn frames_are_tagged_json_as_the_web_client_reads_them() {
        assert_eq!(chat("a").json(), r#"{"type":"chat","text":"a"}"#);
        assert_eq!(DataMessage::Hello.to_json(), r#"{"type":"hello"}"#);
    }
}
