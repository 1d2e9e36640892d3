//! The mark a consumer sets while it retries one event that waits outside its stream (pending
//! or parked): applying that event then removes it from where it waits instead of moving the
//! stream (`inbox`).

use std::cell::RefCell;

/// Where an event being retried waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redo {
    /// Deferred after a failure, or behind an earlier event of its order.
    Pending,
    /// Parked as a dead letter, replayed by an admin.
    Parked,
}

/// The event (by id) being retried on one connection, if any.
#[derive(Debug, Default)]
pub struct RedoMark(RefCell<Option<(String, Redo)>>);

impl RedoMark {
    pub fn set(&self, event: Option<(&str, Redo)>) {
        *self.0.borrow_mut() = event.map(|(id, redo)| (id.to_string(), redo));
    }

    /// Where event `id` waits, if it is the one being retried.
    pub fn get(&self, id: &str) -> Option<Redo> {
        match &*self.0.borrow() {
            Some((marked, redo)) if marked == id => Some(*redo),
            _ => None,
        }
    }
}
