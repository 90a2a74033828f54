//! Ringing calls: invite, accept into a private room, decline, cancel, time out, hang up.

use std::sync::Arc;

use super::*;
use crate::signaling::protocol::{
    CallEndReason, ErrorCode, PRIVATE_ROOM_PREFIX, ProtocolViolation, ServerMessage,
};

#[derive(PartialEq)]
pub(super) enum CallPhase {
    Ringing,
    Accepted,
}

pub(super) struct Call {
    pub(super) caller: String,
    pub(super) callee: String,
    pub(super) phase: CallPhase,
    /// Ends the call unanswered; stopped as soon as the ringing stops another way, so
    /// invites that are cancelled at once leave no timers behind.
    pub(super) ring_timer: Option<tokio::task::AbortHandle>,
}

/// Counts a live ring timer for `/metrics` until dropped (fired or aborted).
struct TimerCount(Arc<std::sync::atomic::AtomicUsize>);

impl TimerCount {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TimerCount(count.clone())
    }
}

impl Drop for TimerCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Hub {
    /// Ends call `call_id` as unanswered after the ring timeout, unless stopped first.
    pub(super) fn ring_timer(self: &Arc<Self>, call_id: &str) -> tokio::task::AbortHandle {
        let hub = Arc::downgrade(self);
        let timeout = self.config.ring_timeout;
        let count = TimerCount::new(&self.metrics.ring_timers);
        let timed_out = call_id.to_string();
        tokio::spawn(async move {
            let _count = count;
            tokio::time::sleep(timeout).await;
            if let Some(hub) = hub.upgrade() {
                let mut st = hub.lock();
                if st
                    .calls
                    .get(&timed_out)
                    .is_some_and(|c| c.phase == CallPhase::Ringing)
                {
                    // Fired, so there is nothing left to abort.
                    if let Some(call) = st.calls.get_mut(&timed_out) {
                        call.ring_timer = None;
                    }
                    hub.end_call(&mut st, &timed_out, CallEndReason::Timeout, None);
                }
            }
        })
        .abort_handle()
    }

    pub(super) fn call_invite(
        self: &Arc<Self>,
        id: &str,
        to: &str,
        metadata: String,
    ) -> Result<(), ProtocolViolation> {
        if metadata.len() > crate::signaling::protocol::MAX_METADATA_BYTES {
            return Err(ProtocolViolation::new(
                ErrorCode::InvalidMetadata,
                format!(
                    "metadata is longer than {} bytes",
                    crate::signaling::protocol::MAX_METADATA_BYTES
                ),
            ));
        }
        let mut st = self.lock();
        let caller = st.clients.get(id).ok_or_else(not_joined)?;
        let room = caller.room.clone().ok_or_else(not_joined)?;
        let from_name = caller.name.clone();
        if caller.call.is_some() {
            return Err(ProtocolViolation::new(
                ErrorCode::Busy,
                "you are already in a call",
            ));
        }
        let callee = self.target(&st, id, to, &room)?;
        if callee.call.is_some() {
            return Err(ProtocolViolation::new(
                ErrorCode::Busy,
                format!("{to:?} is in another call"),
            ));
        }
        let call_id = format!("{:016x}", rand::random::<u64>());
        let timer = self.ring_timer(&call_id);
        st.calls.insert(
            call_id.clone(),
            Call {
                caller: id.to_string(),
                callee: to.to_string(),
                phase: CallPhase::Ringing,
                ring_timer: Some(timer),
            },
        );
        for party in [id, to] {
            if let Some(c) = st.clients.get_mut(party) {
                c.call = Some(call_id.clone());
            }
        }
        self.reply(
            &st,
            id,
            &ServerMessage::CallRinging {
                call_id: call_id.clone(),
                to: to.to_string(),
            },
        );
        self.reply(
            &st,
            to,
            &ServerMessage::CallIncoming {
                call_id: call_id.clone(),
                from: id.to_string(),
                from_name,
                metadata,
            },
        );
        Ok(())
    }

    pub(super) fn call_accept(&self, id: &str, call_id: &str) -> Result<(), ProtocolViolation> {
        let mut st = self.lock();
        let call = st
            .calls
            .get_mut(call_id)
            .ok_or_else(|| unknown_call(call_id))?;
        if call.callee != id {
            // Only a party learns that the call exists.
            return Err(if call.caller == id {
                ProtocolViolation::new(ErrorCode::NotCallee, "only the callee can accept")
            } else {
                unknown_call(call_id)
            });
        }
        if call.phase != CallPhase::Ringing {
            return Err(unknown_call(call_id));
        }
        // A call's private room is a room like any other: it counts against the limit.
        if st.rooms.len() >= self.config.max_rooms {
            return Err(ProtocolViolation::new(
                ErrorCode::TooManyRooms,
                "the server has no room for this call's private room; try again later",
            ));
        }
        let call = st.calls.get_mut(call_id).expect("looked up above");
        call.phase = CallPhase::Accepted;
        if let Some(timer) = call.ring_timer.take() {
            timer.abort();
        }
        let caller = call.caller.clone();
        let room = private_room_name(call_id);
        st.rooms.insert(
            room.clone(),
            Room {
                members: Vec::new(),
                password: None,
                capacity: 2,
                private: Some(vec![caller.clone(), id.to_string()]),
                failed_joins: Default::default(),
                sfu: Default::default(),
                broadcast: false,
            },
        );
        for (party, peer) in [(&caller, id), (&id.to_string(), caller.as_str())] {
            let msg = ServerMessage::CallAccepted {
                call_id: call_id.to_string(),
                room: room.clone(),
                peer: peer.to_string(),
            };
            self.reply(&st, party, &msg);
        }
        Ok(())
    }

    pub(super) fn call_end_by(
        &self,
        id: &str,
        call_id: &str,
        req: EndRequest,
    ) -> Result<(), ProtocolViolation> {
        let mut st = self.lock();
        let call = st.calls.get(call_id).ok_or_else(|| unknown_call(call_id))?;
        let is_caller = call.caller == id;
        if !is_caller && call.callee != id {
            return Err(unknown_call(call_id));
        }
        let ringing = call.phase == CallPhase::Ringing;
        let (reason, detail) = match req {
            EndRequest::Decline(_) if is_caller => {
                return Err(ProtocolViolation::new(
                    ErrorCode::NotCallee,
                    "only the callee can decline; the caller cancels",
                ));
            }
            EndRequest::Cancel if !is_caller => {
                return Err(ProtocolViolation::new(
                    ErrorCode::NotCaller,
                    "only the caller can cancel; the callee declines",
                ));
            }
            EndRequest::Decline(_) | EndRequest::Cancel if !ringing => {
                return Err(ProtocolViolation::new(
                    ErrorCode::UnknownCall,
                    "the call was already answered; hang up instead",
                ));
            }
            EndRequest::Decline(reason) => (CallEndReason::Declined, reason),
            EndRequest::Cancel => (CallEndReason::Cancelled, None),
            EndRequest::Hangup if ringing && is_caller => (CallEndReason::Cancelled, None),
            EndRequest::Hangup if ringing => (CallEndReason::Declined, None),
            EndRequest::Hangup => (CallEndReason::Hangup, None),
        };
        self.end_call(&mut st, call_id, reason, detail);
        Ok(())
    }

    /// Ends a call, tells both parties, and closes its private room to newcomers.
    pub(super) fn end_call(
        &self,
        st: &mut HubState,
        call_id: &str,
        reason: CallEndReason,
        detail: Option<String>,
    ) {
        let Some(call) = st.calls.remove(call_id) else {
            return;
        };
        if let Some(timer) = call.ring_timer {
            timer.abort();
        }
        let msg = ServerMessage::CallEnded {
            call_id: call_id.to_string(),
            reason,
            detail,
        };
        for party in [&call.caller, &call.callee] {
            if let Some(c) = st.clients.get_mut(party.as_str())
                && c.call.as_deref() == Some(call_id)
            {
                c.call = None;
            }
            self.reply(st, party, &msg);
        }
        let room_name = private_room_name(call_id);
        if let Some(room) = st.rooms.get_mut(&room_name) {
            room.private = Some(Vec::new());
            // Nobody made it in (or everyone left): the room goes with the call.
            if room.members.is_empty() {
                st.rooms.remove(&room_name);
            }
        }
    }
}

pub(super) enum EndRequest {
    Decline(Option<String>),
    Cancel,
    Hangup,
}

pub(super) fn private_room_name(call_id: &str) -> String {
    format!("{PRIVATE_ROOM_PREFIX}{call_id}")
}

pub(super) fn unknown_call(call_id: &str) -> ProtocolViolation {
    ProtocolViolation::new(ErrorCode::UnknownCall, format!("no such call {call_id:?}"))
}
