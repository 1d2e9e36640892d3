//! The outbox relay's lease: at most one relay per source publishes at a time, and a relay
//! that finds the lease taken leaves its events to the holder instead of waiting.
//!
//! Why: publishing inside one write transaction (the obvious way to send each event once and
//! in order) holds the database's write lock across a Redis round trip, and every new order
//! then queues behind it; a relay that is slow to be scheduled stalls a hundred requests.
//! With the lease, the write lock is held only for short statements, and under load one
//! holder streams pages while the other relays return at once.
//!
//! Who relays: the instance whose transaction wrote an event claims the lease in that same
//! transaction when it is free (`outbox::append`, `claim`), and relays after commit. The sweep,
//! the wake loop and a retry after a failed send look for unsent events first ([`RelayPort::needed`]) and
//! take the lease in a statement of their own.
//!
//! Why no event is stranded: the holder records a page as sent and, in the same serialized
//! write, releases the lease only if nothing is left. A writer that found the lease taken
//! committed before that write, whose check therefore sees its event (see ADR 0001, 0011). A
//! holder that dies keeps the lease until it expires; the next writer or the sweep then takes
//! it.

use crate::claim::Claim;
use crate::outbox::Row;

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
    /// The consumers' copies of up to `limit` unsent events, oldest first.
    fn pending(&self, limit: i64) -> anyhow::Result<Vec<Row>>;
    /// Whether there is anything for a relay to do: events wait and nobody holds an unexpired
    /// lease to send them (one read, no write lock).
    fn needed(&self, now_ms: i64) -> anyhow::Result<bool>;
    /// Takes the lease for `holder` unless an unexpired one exists; true when taken.
    fn take_lease(&self, holder: &str, now_ms: i64) -> anyhow::Result<bool>;
    /// In one serialized write: records events up to outbox position `position` as sent, then
    /// releases the lease if none is left unsent, or renews it.
    fn settle(&self, holder: &str, position: i64, now_ms: i64) -> anyhow::Result<Settled>;
    /// Lets go of the lease, leaving any events for the next relay or the sweep.
    fn release(&self, holder: &str) -> anyhow::Result<()>;
}

/// Who relays: the holder of a lease claimed when the events were written (with those events,
/// when they are all that is unsent), or one that takes it now.
#[derive(Debug, Clone, PartialEq)]
pub enum Holder {
    Claimed(Claim),
    Taking(String),
}

/// Sends pages with `send` under the lease until none is left, taking the lease first unless
/// `holder` claimed it already; a claim that knows every unsent copy sends those as its first
/// page without reading them. Returns how many copies went out; 0 at once when another relay
/// holds the lease. A page holds the consumers' copies of the oldest unsent events
/// (`outbox::unpublished`); `send` answers how many of them, in order, reached their consumer:
/// the events whose copies all did are recorded as sent, and the rest (or the whole page, when
/// it fails) are left for the next relay or the sweep, an error saying so.
pub fn relay(
    port: &impl RelayPort,
    holder: Holder,
    now_ms: impl Fn() -> i64,
    mut send: impl FnMut(&[Row]) -> anyhow::Result<usize>,
) -> anyhow::Result<usize> {
    let (holder, mut known) = match holder {
        Holder::Claimed(claim) => (claim.holder, claim.unsent),
        Holder::Taking(holder) => {
            if !port.take_lease(&holder, now_ms())? {
                return Ok(0);
            }
            (holder, None)
        }
    };
    let holder = holder.as_str();
    let mut sent = 0;
    for _ in 0..MAX_PAGES {
        let page = match known.take() {
            Some(rows) => rows,
            None => port.pending(PAGE)?,
        };
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

/// The lease in the function's SQL database: the row of table `outbox_relay`.
pub mod sql {
    use super::{RelayPort, Settled};
    use crate::outbox::{self, Row, LEASE_TTL_MS, SENT_THROUGH, TAKE_LEASE};
    use crate::sql::{i, int, t, text, Db};

    /// A row when events are unsent and no unexpired lease exists; `?1` now.
    pub const NEEDED: &str = "SELECT 1 FROM outbox_relay r WHERE r.id = 1 \
        AND r.expires_at <= ?1 AND EXISTS (SELECT 1 FROM outbox WHERE seq > r.sent_through)";
    /// Releases the lease if `?1` holds it.
    pub const RELEASE: &str = "UPDATE outbox_relay SET expires_at = 0 WHERE id = 1 AND holder = ?1";

    /// Records events up to `?1` as sent; then, if `?2` still holds the lease, releases it
    /// (expiry 0) when nothing after is unsent, else renews it to `?3`. Returns the holder and
    /// the expiry.
    pub fn settle_sql() -> String {
        format!(
            "UPDATE outbox_relay SET sent_through = {SENT_THROUGH}, expires_at = CASE \
               WHEN holder <> ?2 THEN expires_at \
               WHEN EXISTS (SELECT 1 FROM outbox WHERE seq > {SENT_THROUGH}) THEN ?3 \
               ELSE 0 END \
             WHERE id = 1 RETURNING holder, expires_at"
        )
    }

    /// The relay's view of one source's database.
    pub struct Outbox<'a> {
        pub db: &'a Db,
        pub source: &'a str,
    }

    impl RelayPort for Outbox<'_> {
        fn pending(&self, limit: i64) -> anyhow::Result<Vec<Row>> {
            outbox::unpublished(self.db, self.source, limit)
        }

        fn needed(&self, now_ms: i64) -> anyhow::Result<bool> {
            Ok(!self.db.exec(NEEDED, &[i(now_ms)])?.rows.is_empty())
        }

        fn take_lease(&self, holder: &str, now_ms: i64) -> anyhow::Result<bool> {
            let taken = self.db.exec(
                TAKE_LEASE,
                &[t(holder), i(now_ms), i(now_ms + LEASE_TTL_MS)],
            )?;
            Ok(!taken.rows.is_empty())
        }

        /// One statement, serialized with the writers (`Db::write`): a writer that found the
        /// lease taken committed before it, so its check sees that writer's event.
        fn settle(&self, holder: &str, position: i64, now_ms: i64) -> anyhow::Result<Settled> {
            let rows = self.db.write(
                &settle_sql(),
                &[i(position), t(holder), i(now_ms + LEASE_TTL_MS)],
            )?;
            let row = rows
                .rows
                .first()
                .ok_or_else(|| anyhow::anyhow!("the outbox has no relay row"))?;
            Ok(if text(row, 0) != holder {
                Settled::Lost
            } else if int(row, 1) == 0 {
                Settled::Done
            } else {
                Settled::More
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
    use crate::outbox::LEASE_TTL_MS as TTL_MS;
    use crate::testing::envelope as env;
    use std::cell::RefCell;

    fn taking(holder: &str) -> Holder {
        Holder::Taking(holder.into())
    }

    /// The outbox and lease in memory.
    #[derive(Default)]
    struct Mem {
        /// (seq, published)
        rows: RefCell<Vec<(i64, bool)>>,
        /// Copies of each event a page holds (consumers that take it); 0 is taken as 1.
        copies: usize,
        lease: RefCell<Option<(String, i64)>>,
        /// How many pages were read.
        reads: std::cell::Cell<usize>,
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

        fn lease_taken(&self, now_ms: i64) -> bool {
            self.lease.borrow().as_ref().is_some_and(|l| l.1 > now_ms)
        }
    }

    impl RelayPort for Mem {
        fn pending(&self, limit: i64) -> anyhow::Result<Vec<Row>> {
            self.reads.set(self.reads.get() + 1);
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
        fn needed(&self, now_ms: i64) -> anyhow::Result<bool> {
            Ok(!self.unpublished().is_empty() && !self.lease_taken(now_ms))
        }
        fn take_lease(&self, holder: &str, now_ms: i64) -> anyhow::Result<bool> {
            if self.lease_taken(now_ms) {
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
            taking("a"),
            || 0,
            |p| {
                sent.extend(seqs(p));
                Ok(p.len())
            },
        )
        .unwrap();
        assert_eq!((n, sent), (3, vec![1, 2, 3]));
        assert_all_sent_and_let_go(&m);
    }

    #[test]
    fn events_committed_while_sending_go_with_the_holder() {
        let m = Mem::default();
        m.append(1);
        let mut pages = vec![];
        relay(
            &m,
            taking("a"),
            || 0,
            |p| {
                pages.push(seqs(p));
                // Another instance commits events and, seeing the lease taken, leaves them.
                if pages.len() == 1 {
                    m.append(2);
                    assert!(!needed_by(&m, 0));
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
        assert!(!needed_by(&m, 10));
        let n = relay(&m, taking("b"), || 10, |_| panic!("must not send")).unwrap();
        assert_eq!(n, 0);
        assert_eq!(m.unpublished(), vec![1]);
    }

    #[test]
    fn an_expired_lease_is_taken_over() {
        let m = Mem::default();
        m.append(2);
        assert!(m.take_lease("dead", 0).unwrap());
        assert!(needed_by(&m, TTL_MS));
        assert_eq!(
            relay(&m, taking("b"), || TTL_MS, |p| Ok(p.len())).unwrap(),
            2
        );
        assert!(m.lease.borrow().is_none());
    }

    #[test]
    fn a_failed_send_marks_nothing_and_lets_go() {
        let m = Mem::default();
        m.append(2);
        let err = relay(&m, taking("a"), || 0, |_| anyhow::bail!("redis down")).unwrap_err();
        assert!(err.to_string().contains("redis down"));
        assert_eq!(m.unpublished(), vec![1, 2]);
        assert!(needed_by(&m, 0));
    }

    #[test]
    fn a_holder_whose_lease_was_taken_over_stops() {
        let m = Mem::default();
        m.append(1);
        let mut calls = 0;
        relay(
            &m,
            taking("a"),
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
        let err = relay(&m, taking("a"), || 0, |_| Ok(1)).unwrap_err();
        assert!(err.to_string().contains("2 copies"), "{err}");
        assert_eq!(m.unpublished(), vec![2, 3]);
        assert!(needed_by(&m, 0), "the lease is free for the retry");
    }

    #[test]
    fn an_event_is_marked_only_when_every_copy_arrived() {
        let m = Mem {
            copies: 2,
            ..Mem::default()
        };
        m.append(2);
        // Copies 1a, 1b, 2a reach their consumers; 2b does not.
        let err = relay(&m, taking("a"), || 0, |p| Ok(p.len() - 1)).unwrap_err();
        assert!(err.to_string().contains("1 copies"), "{err}");
        assert_eq!(m.unpublished(), vec![2]);
    }

    /// The writer's claim, taken in its transaction: the lease now looks taken to everyone.
    fn claimed(m: &Mem, unsent: Option<Vec<Row>>) -> Holder {
        assert!(m.take_lease("writer", 0).unwrap());
        assert!(!needed_by(m, 1));
        Holder::Claimed(Claim {
            holder: "writer".into(),
            unsent,
        })
    }

    #[test]
    fn a_lease_claimed_with_the_events_is_relayed_without_taking_it_again() {
        let m = Mem::default();
        m.append(2);
        let n = relay(&m, claimed(&m, None), || 1, |p| Ok(p.len())).unwrap();
        assert_eq!(n, 2);
        assert!(m.unpublished().is_empty());
        assert!(m.lease.borrow().is_none(), "released once nothing is left");
    }

    #[test]
    fn a_claim_that_knows_the_unsent_events_sends_them_without_reading() {
        let m = Mem::default();
        m.append(1);
        let unsent = m.pending(PAGE).unwrap();
        m.reads.set(0);
        let mut pages = vec![];
        let n = relay(
            &m,
            claimed(&m, Some(unsent)),
            || 1,
            |p| {
                pages.push(seqs(p));
                Ok(p.len())
            },
        )
        .unwrap();
        assert_eq!((n, pages, m.reads.get()), (1, vec![vec![1]], 0));
        assert_all_sent_and_let_go(&m);
    }

    #[test]
    fn events_written_by_others_after_the_known_ones_are_read_and_sent() {
        let m = Mem::default();
        m.append(1);
        let unsent = m.pending(PAGE).unwrap();
        let mut pages = vec![];
        relay(
            &m,
            claimed(&m, Some(unsent)),
            || 1,
            |p| {
                // Another writer commits while the first page is out and leaves it to the holder.
                if pages.is_empty() {
                    m.append(2);
                }
                pages.push(seqs(p));
                Ok(p.len())
            },
        )
        .unwrap();
        assert_eq!(pages, vec![vec![1], vec![2, 3]]);
        assert!(m.unpublished().is_empty());
    }

    fn assert_all_sent_and_let_go(m: &Mem) {
        assert!(m.unpublished().is_empty());
        assert!(m.lease.borrow().is_none());
    }

    fn needed_by(m: &Mem, now_ms: i64) -> bool {
        m.needed(now_ms).unwrap()
    }

    #[test]
    fn nothing_pending_needs_no_relay() {
        let m = Mem::default();
        assert!(!needed_by(&m, 0));
    }
}
