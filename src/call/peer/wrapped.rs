//! An interceptor of webrtc-rs's wrapped to see what it sees first: everything passes
//! through to it, with [`Around`]'s hooks before.

use std::time::Instant;

use rtc::interceptor::{Interceptor, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;

/// What a [`Wrapped`] adds to the interceptor inside.
pub(super) trait Around: Send + Sync {
    /// Sees each inbound packet before the interceptor inside.
    fn before_read(&mut self, _msg: &TaggedPacket) {}

    /// The streams the interceptor inside is bound to (or unbound from) for a local
    /// stream: that stream alone unless said otherwise.
    fn local_streams(&self, info: &StreamInfo) -> Vec<StreamInfo> {
        vec![info.clone()]
    }
}

pub(super) struct Wrapped<I, A> {
    pub(super) inner: I,
    pub(super) around: A,
}

impl<I: Interceptor, A: Around> Protocol<TaggedPacket, TaggedPacket, ()> for Wrapped<I, A> {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = I::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.around.before_read(&msg);
        self.inner.handle_read(msg)
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inner.poll_read()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.inner.handle_write(msg)
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.inner.poll_write()
    }

    fn handle_event(&mut self, evt: ()) -> Result<(), Self::Error> {
        self.inner.handle_event(evt)
    }

    fn poll_event(&mut self) -> Option<()> {
        self.inner.poll_event()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.inner.handle_timeout(now)
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close()
    }
}

impl<I: Interceptor, A: Around> Interceptor for Wrapped<I, A> {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        for s in self.around.local_streams(info) {
            self.inner.bind_local_stream(&s);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        for s in self.around.local_streams(info).iter().rev() {
            self.inner.unbind_local_stream(s);
        }
    }

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.inner.bind_remote_stream(info);
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.inner.unbind_remote_stream(info);
    }
}
