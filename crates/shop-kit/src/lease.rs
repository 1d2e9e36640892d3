//! The outbox relay's lease: at most one relay per source publishes at a time, and a relay
//! that finds the lease taken leaves its events to the holder instead of waiting.
//!
//! Why: publishing inside one write transaction (the obvious way to send each event once and
//! in order) holds the database's write lock across a Redis round trip, and every new order
//! then queues behind it; a relay that is slow to be scheduled stalls a hundred requests.
//! With the lease, the write lock is held only for short statements, and under load one
//! holder streams pages while the other relays return at once.
//!
//! Why no event is stranded: the holder marks a page published and, in the same write
//! transaction, releases the lease only if nothing is left. An event committed before a
//! relay saw the lease taken is therefore seen by that release's check (see ADR 0001). A
//! holder that dies keeps the lease until it expires; the next relay or sweep then takes it.

use crate::outbox::Row;

/// How long a lease lasts without being renewed: the longest a killed holder delays events.
const TTL_MS: i64 = 2_000;
/// Events per page (each with a copy per consumer that takes it), one Redis round trip each.
const PAGE: i64 = 200;
/// Pages one holder sends before it lets go, so a relay always ends.
const MAX_PAGES: usize = 1_000;

/// What happened to the lease after a page was marked published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Nothing left: the lease is released.
    Done,
    /// More events arrived meanwhile: the lease is renewed.
    More,
    /// The lease expired and someone else holds it now: they take over.
    Lost,
}

/// The outbox and its lease as the relay sees them.
pub trait RelayPort {
    /// The consumers' copies of up to `limit` unpublished events, oldest first.
    fn pending(&self, limit: i64) -> anyhow::Result<Vec<Row>>;
    /// Whether any event is unpublished (one indexed read, nothing decoded).
    fn any_pending(&self) -> anyhow::Result<bool>;
    /// Whether an unexpired lease exists (a read: no write lock).
    fn lease_taken(&self, now_ms: i64) -> anyhow::Result<bool>;
    /// Takes the lease for `holder` unless an unexpired one exists; true when taken.
    fn take_lease(&self, holder: &str, now_ms: i64) -> anyhow::Result<bool>;
    /// In one write transaction: marks events up to outbox position `position` published,
    /// then releases the lease if none is left unpublished, or renews it.
    fn settle(&self, holder: &str, position: i64, now_ms: i64) -> anyhow::Result<Settled>;
    /// Lets go of the lease, leaving any events for the next relay or the sweep.
    fn release(&self, holder: &str) -> anyhow::Result<()>;
}

/// Whether there is anything for a relay to do: events wait and nobody is sending them.
pub fn needed(port: &impl RelayPort, now_ms: i64) -> anyhow::Result<bool> {
    Ok(port.any_pending()? && !port.lease_taken(now_ms)?)
}

/// Takes the lease and sends pages with `send` until none is left. Returns how many copies
/// went out; 0 at once when another relay holds the lease. A page holds the consumers' copies
/// of the oldest unpublished events (`outbox::unpublished`); `send` answers how many of them,
/// in order, reached their consumer: the events whose copies all did are marked published, and
/// the rest (or the whole page, when it fails) are left for the next relay or the sweep, an
/// error saying so.
pub fn relay(
    port: &impl RelayPort,
    holder: &str,
    now_ms: impl Fn() -> i64,
    mut send: impl FnMut(&[Row]) -> anyhow::Result<usize>,
) -> anyhow::Result<usize> {
    if !port.take_lease(holder, now_ms())? {
        return Ok(0);
    }
    let mut sent = 0;
    for _ in 0..MAX_PAGES {
        let page = port.pending(PAGE)?;
        if !page.is_empty() {
            let delivered = match send(&page) {
                Ok(n) => n.min(page.len()),
                Err(e) => {
                    let _ = port.release(holder);
                    return Err(e);
                }
            };
            sent += delivered;
            if delivered < page.len() {
                if let Some(last) = crate::outbox::sent_through(&page, delivered) {
                    port.settle(holder, last, now_ms())?;
                }
                let _ = port.release(holder);
                anyhow::bail!(
                    "{} copies of events did not reach their consumer; left for a retry",
                    page.len() - delivered
                );
            }
        }
        let last = page.last().map_or(0, |r| r.position);
        match port.settle(holder, last, now_ms())? {
            Settled::More => continue,
            Settled::Done | Settled::Lost => return Ok(sent),
        }
    }
    port.release(holder)?;
    Ok(sent)
}

/// The lease in the function's SQL database, table `relay_lease` (one row while held).
pub mod sql {
    use super::{RelayPort, Settled, TTL_MS};
    use crate::outbox::{self, Row};
    use crate::sql::{i, t, Db};

    /// Whether an unexpired lease exists; `?1` now.
    pub const TAKEN: &str = "SELECT 1 FROM relay_lease WHERE expires_at > ?1";
    /// One statement, so one short implicit transaction: inserted when free, taken over when
    /// expired, left alone otherwise. Returns a row only when taken. `?1` holder, `?2` now,
    /// `?3` expiry.
    pub const TAKE: &str = "INSERT INTO relay_lease (id, holder, expires_at) VALUES (1, ?1, ?3) \
        ON CONFLICT(id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
        WHERE relay_lease.expires_at <= ?2 RETURNING holder";
    /// Renews the lease if `?1` still holds it (a row returned). `?2` the new expiry.
    pub const RENEW: &str =
        "UPDATE relay_lease SET expires_at = ?2 WHERE holder = ?1 RETURNING holder";
    /// Releases the lease if `?1` holds it.
    pub const RELEASE: &str = "DELETE FROM relay_lease WHERE holder = ?1";

    /// The relay's view of one source's database.
    pub struct Outbox<'a> {
        pub db: &'a Db,
        pub source: &'a str,
    }

    impl RelayPort for Outbox<'_> {
        fn pending(&self, limit: i64) -> anyhow::Result<Vec<Row>> {
            outbox::unpublished(self.db, self.source, limit)
        }

        fn any_pending(&self) -> anyhow::Result<bool> {
            outbox::any_unpublished(self.db)
        }

        fn lease_taken(&self, now_ms: i64) -> anyhow::Result<bool> {
            Ok(!self.db.exec(TAKEN, &[i(now_ms)])?.rows.is_empty())
        }

        fn take_lease(&self, holder: &str, now_ms: i64) -> anyhow::Result<bool> {
            let taken = self
                .db
                .exec(TAKE, &[t(holder), i(now_ms), i(now_ms + TTL_MS)])?;
            Ok(!taken.rows.is_empty())
        }

        fn settle(&self, holder: &str, position: i64, now_ms: i64) -> anyhow::Result<Settled> {
            self.db.transaction(|| {
                outbox::mark_published(self.db, position)?;
                if !self.any_pending()? {
                    self.release(holder)?;
                    return Ok(Settled::Done);
                }
                let renewed = self.db.exec(RENEW, &[t(holder), i(now_ms + TTL_MS)])?;
                Ok(if renewed.rows.is_empty() {
                    Settled::Lost
                } else {
                    Settled::More
                })
            })
        }

        fn release(&self, holder: &str) -> anyhow::Result<()> {
            self.db.exec(RELEASE, &[t(holder)])?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::envelope as env;
    use std::cell::RefCell;

    /// The outbox and lease in memory.
    #[derive(Default)]
    struct Mem {
        /// (seq, published)
        rows: RefCell<Vec<(i64, bool)>>,
        /// Copies of each event a page holds (consumers that take it); 0 is taken as 1.
        copies: usize,
        lease: RefCell<Option<(String, i64)>>,
    }

    impl Mem {
        fn append(&self, n: usize) {
            let mut rows = self.rows.borrow_mut();
            for _ in 0..n {
                let seq = rows.len() as i64 + 1;
                rows.push((seq, false));
            }
        }

        fn unpublished(&self) -> Vec<i64> {
            let rows = self.rows.borrow();
            rows.iter().filter(|r| !r.1).map(|r| r.0).collect()
        }
    }

    impl RelayPort for Mem {
        fn pending(&self, limit: i64) -> anyhow::Result<Vec<Row>> {
            Ok(self
                .unpublished()
                .into_iter()
                .take(limit as usize)
                .flat_map(|seq| {
                    let copy = Row {
                        position: seq,
                        env: env(seq),
                    };
                    std::iter::repeat_n(copy, self.copies.max(1))
                })
                .collect())
        }
        fn any_pending(&self) -> anyhow::Result<bool> {
            Ok(!self.unpublished().is_empty())
        }
        fn lease_taken(&self, now_ms: i64) -> anyhow::Result<bool> {
            Ok(self.lease.borrow().as_ref().is_some_and(|l| l.1 > now_ms))
        }
        fn take_lease(&self, holder: &str, now_ms: i64) -> anyhow::Result<bool> {
            if self.lease_taken(now_ms)? {
                return Ok(false);
            }
            *self.lease.borrow_mut() = Some((holder.into(), now_ms + TTL_MS));
            Ok(true)
        }
        fn settle(&self, holder: &str, seq: i64, now_ms: i64) -> anyhow::Result<Settled> {
            for row in self.rows.borrow_mut().iter_mut() {
                row.1 |= row.0 <= seq;
            }
            if self.unpublished().is_empty() {
                self.release(holder)?;
                return Ok(Settled::Done);
            }
            match &mut *self.lease.borrow_mut() {
                Some((h, until)) if h == holder => {
                    *until = now_ms + TTL_MS;
                    Ok(Settled::More)
                }
                _ => Ok(Settled::Lost),
            }
        }
        fn release(&self, holder: &str) -> anyhow::Result<()> {
            let mut lease = self.lease.borrow_mut();
            if lease.as_ref().is_some_and(|l| l.0 == holder) {
                *lease = None;
            }
            Ok(())
        }
    }

    fn seqs(page: &[Row]) -> Vec<i64> {
        page.iter().map(|r| r.position).collect()
    }

    #[test]
    fn the_holder_sends_everything_in_order_and_lets_go() {
        let m = Mem::default();
        m.append(3);
        let mut sent = vec![];
        let n = relay(
            &m,
            "a",
            || 0,
            |p| {
                sent.extend(seqs(p));
                Ok(p.len())
            },
        )
        .unwrap();
        assert_eq!((n, sent), (3, vec![1, 2, 3]));
        assert!(m.unpublished().is_empty());
        assert!(m.lease.borrow().is_none());
    }

    #[test]
    fn events_committed_while_sending_go_with_the_holder() {
        let m = Mem::default();
        m.append(1);
        let mut pages = vec![];
        relay(
            &m,
            "a",
            || 0,
            |p| {
                pages.push(seqs(p));
                // Another instance commits events and, seeing the lease taken, leaves them.
                if pages.len() == 1 {
                    m.append(2);
                    assert!(!needed(&m, 0).unwrap());
                }
                Ok(p.len())
            },
        )
        .unwrap();
        assert_eq!(pages, vec![vec![1], vec![2, 3]]);
        assert!(m.unpublished().is_empty());
    }

    #[test]
    fn a_relay_finding_the_lease_taken_sends_nothing() {
        let m = Mem::default();
        m.append(1);
        assert!(m.take_lease("a", 0).unwrap());
        assert!(!needed(&m, 10).unwrap());
        let n = relay(&m, "b", || 10, |_| panic!("must not send")).unwrap();
        assert_eq!(n, 0);
        assert_eq!(m.unpublished(), vec![1]);
    }

    #[test]
    fn an_expired_lease_is_taken_over() {
        let m = Mem::default();
        m.append(2);
        assert!(m.take_lease("dead", 0).unwrap());
        assert!(needed(&m, TTL_MS).unwrap());
        assert_eq!(relay(&m, "b", || TTL_MS, |p| Ok(p.len())).unwrap(), 2);
        assert!(m.lease.borrow().is_none());
    }

    #[test]
    fn a_failed_send_marks_nothing_and_lets_go() {
        let m = Mem::default();
        m.append(2);
        let err = relay(&m, "a", || 0, |_| anyhow::bail!("redis down")).unwrap_err();
        assert!(err.to_string().contains("redis down"));
        assert_eq!(m.unpublished(), vec![1, 2]);
        assert!(needed(&m, 0).unwrap());
    }

    #[test]
    fn a_holder_whose_lease_was_taken_over_stops() {
        let m = Mem::default();
        m.append(1);
        let mut calls = 0;
        relay(
            &m,
            "a",
            || 0,
            |_| {
                calls += 1;
                // Stalled past its lease: another relay takes over and more events arrive.
                *m.lease.borrow_mut() = Some(("b".into(), 5 * TTL_MS));
                m.append(1);
                Ok(1)
            },
        )
        .unwrap();
        assert_eq!(calls, 1);
        assert_eq!(m.unpublished(), vec![2]);
        assert_eq!(m.lease.borrow().as_ref().unwrap().0, "b");
    }

    #[test]
    fn what_reached_every_subscriber_is_marked_and_the_rest_left() {
        let m = Mem::default();
        m.append(3);
        let err = relay(&m, "a", || 0, |_| Ok(1)).unwrap_err();
        assert!(err.to_string().contains("2 copies"), "{err}");
        assert_eq!(m.unpublished(), vec![2, 3]);
        assert!(needed(&m, 0).unwrap(), "the lease is free for the retry");
    }

    #[test]
    fn an_event_is_marked_only_when_every_copy_arrived() {
        let m = Mem {
            copies: 2,
            ..Mem::default()
        };
        m.append(2);
        // Copies 1a, 1b, 2a reach their consumers; 2b does not.
        let err = relay(&m, "a", || 0, |p| Ok(p.len() - 1)).unwrap_err();
        assert!(err.to_string().contains("1 copies"), "{err}");
        assert_eq!(m.unpublished(), vec![2]);
    }

    #[test]
    fn nothing_pending_needs_no_relay() {
        let m = Mem::default();
        assert!(!needed(&m, 0).unwrap());
    }
}
