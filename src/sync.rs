//! One policy for poisoned locks: recover the data. Every mutex here guards plain state
//! that stays consistent between statements; a thread that panicked while holding one has
//! already been reported, and the call must go on for everyone else.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) trait LockExt<T> {
    /// Locks, taking the data over from a thread that panicked while holding it.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
