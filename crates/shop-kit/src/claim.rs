//! The relay lease this instance claimed inside one of its write transactions
//! (`outbox::append`): the instance that writes an event claims the relay in the same
//! transaction, and so publishes right after commit with no read and no write of its own to
//! find out whether it should (`publish`). A rolled-back transaction gives the claim up.
//!
//! The claim also keeps the copies of the events this instance wrote, when they are all that
//! is unsent: the lease was free with its cursor right before the first of them, and each later
//! one came right after the one before (a writer serializes with the others, and positions
//! follow commit order, so no other event can lie between). The relay then sends them as they
//! are, without reading them back; when in doubt it reads.
//!
//! Kept per instance rather than per connection: a handler writes through its store and the
//! component publishes after the response through another handle on the same database.
//! Spin gives each request or message a fresh instance, and natively each test its own
//! thread, so a thread-local is exactly one instance's.

use std::cell::RefCell;

use crate::envelope::Row;

/// A claimed lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub holder: String,
    /// Every unsent copy of every event, oldest first, when this instance wrote them all;
    /// `None`: unknown here, to be read.
    pub unsent: Option<Vec<Row>>,
}

impl Claim {
    /// The lease taken by `holder` in the transaction that wrote `copies` (the copies of one
    /// event), the lease's cursor being `sent_through`.
    pub fn new(holder: String, sent_through: i64, copies: Vec<Row>) -> Self {
        let next = copies
            .first()
            .is_some_and(|c| c.position == sent_through + 1);
        Self {
            holder,
            unsent: next.then_some(copies),
        }
    }

    /// Adds the copies of a later event written under the claim; the unsent copies become
    /// unknown unless it comes right after the last one known.
    pub fn add(&mut self, copies: Vec<Row>) {
        self.unsent = self.unsent.take().and_then(|mut rows| {
            let next = rows.last().map(|r| r.position + 1);
            (copies.first().map(|c| c.position) == next).then(|| {
                rows.extend(copies);
                rows
            })
        });
    }
}

thread_local! {
    static CLAIM: RefCell<Option<Claim>> = const { RefCell::new(None) };
}

/// The claim this instance holds, if any.
pub fn held() -> Option<Claim> {
    CLAIM.with(|c| c.borrow().clone())
}

/// Records (or, with `None`, forgets) the claim.
pub fn set(claim: Option<Claim>) {
    CLAIM.with(|c| *c.borrow_mut() = claim);
}

/// Hands the claim to the relay that publishes under it, forgetting it here.
pub fn take() -> Option<Claim> {
    CLAIM.with(|c| c.borrow_mut().take())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copies(position: i64, consumers: &[&str]) -> Vec<Row> {
        consumers
            .iter()
            .map(|consumer| Row {
                position,
                env: crate::Envelope {
                    consumer: consumer.to_string(),
                    ..crate::testing::envelope(position)
                },
            })
            .collect()
    }

    fn positions(claim: &Claim) -> Option<Vec<i64>> {
        let rows = claim.unsent.as_ref()?;
        Some(rows.iter().map(|r| r.position).collect())
    }

    #[test]
    fn a_claim_is_taken_once() {
        assert_eq!(held(), None);
        let claim = Claim::new("a".into(), 0, copies(1, &["b"]));
        set(Some(claim.clone()));
        assert_eq!(held(), Some(claim.clone()));
        assert_eq!(take(), Some(claim));
        assert_eq!(take(), None);
    }

    #[test]
    fn the_writer_knows_the_unsent_copies_only_when_its_events_follow_the_cursor() {
        let fresh = Claim::new("a".into(), 4, copies(5, &["billing", "orders"]));
        assert_eq!(positions(&fresh), Some(vec![5, 5]));
        // An unsent event lies before the writer's: the relay must read.
        assert_eq!(
            positions(&Claim::new("a".into(), 3, copies(5, &["x"]))),
            None
        );
    }

    #[test]
    fn later_events_are_known_only_while_nothing_else_lies_between() {
        let mut claim = Claim::new("a".into(), 0, copies(1, &["x"]));
        claim.add(copies(2, &["x", "y"]));
        assert_eq!(positions(&claim), Some(vec![1, 2, 2]));
        // Another writer's event (position 3) committed between this instance's writes.
        claim.add(copies(4, &["x"]));
        assert_eq!(positions(&claim), None);
        claim.add(copies(5, &["x"]));
        assert_eq!(positions(&claim), None, "unknown stays unknown");
    }
}
