//! The relay lease this instance claimed inside one of its write transactions
//! (`outbox::append`): the instance that writes an event claims the relay in the same
//! transaction, and so publishes right after commit with no read and no write of its own to
//! find out whether it should (`publish`). A rolled-back transaction gives the claim up.
//!
//! Kept per instance rather than per connection: a handler writes through its store and the
//! component publishes after the response through another handle on the same database.
//! Spin gives each request or message a fresh instance, and natively each test its own
//! thread, so a thread-local is exactly one instance's.

use std::cell::RefCell;

thread_local! {
    static HOLDER: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The holder name under which this instance claimed the lease, if it did.
pub fn held() -> Option<String> {
    HOLDER.with(|h| h.borrow().clone())
}

/// Records (or, with `None`, forgets) the claim.
pub fn set(holder: Option<String>) {
    HOLDER.with(|h| *h.borrow_mut() = holder);
}

/// Hands the claim to the relay that publishes under it, forgetting it here.
pub fn take() -> Option<String> {
    HOLDER.with(|h| h.borrow_mut().take())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_taken_once() {
        assert_eq!(held(), None);
        set(Some("a".into()));
        assert_eq!(held().as_deref(), Some("a"));
        assert_eq!(take().as_deref(), Some("a"));
        assert_eq!(take(), None);
    }
}
