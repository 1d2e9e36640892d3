//! Lists of notification ids kept in pages of the key-value store: a customer's notifications
//! (`customer:<id>`) and the queue of those still to deliver (`undelivered`).
//!
//! Why pages: the store has no range reads, so a list is a value. As one value it was read,
//! parsed and written whole on every notification, which made each notification cost grow
//! with the list (a customer with 10 000 orders rewrote a 550 KB value per order; a webhook
//! down for a day rewrote every waiting id per notification, and per delivery on recovery).
//! In pages, an append or a removal of the newest id reads and writes the last page only.
//!
//! Keys of list `L`: `L` is page 0 (so a list written as one value is page 0 as it stands),
//! `L:<k>` page k, `L:pages` how many pages there are (absent: 1), `L:head` the first page
//! that may hold ids (absent: 0), moved on by [`retain`]. Customer ids hold no `:`
//! (`is_plain_id`), so these keys never collide.
//! The store has no transactions: the counter is written before a new page, so a crash in
//! between leaves an empty page, which reads as such, never a page the counter skips.
//! Nor has it compare-and-swap: two instances writing one page at the same moment can lose
//! one id, as with the single value before. So each list is split by stream (the partition of
//! the notification's order, `shop_kit::stream`): the Redis trigger hands a stream's messages
//! to one handler at a time, so only a retry or the catch-up sweep can write a page at the
//! same moment as the handler. [`retain`] never rewrites the last page, the one appends write.

/// Ids per page.
pub const PAGE: usize = 100;

/// The store as the lists see it.
pub trait PageStore {
    /// The ids under `key`; empty when absent.
    fn ids(&self, key: &str) -> anyhow::Result<Vec<String>>;
    fn set_ids(&self, key: &str, ids: &[String]) -> anyhow::Result<()>;
    fn count(&self, key: &str) -> anyhow::Result<Option<u64>>;
    fn set_count(&self, key: &str, count: u64) -> anyhow::Result<()>;
}

/// `list` split by stream: partition 0 keeps the key of the time before streams, so existing
/// lists read on; `~` never occurs in a customer id, nor in a page suffix.
fn in_stream(list: String, partition: i64) -> String {
    match partition {
        0 => list,
        p => format!("{list}~{p}"),
    }
}

/// The list of a customer's notification ids of orders on stream `partition`.
pub fn customer(customer_id: &str, partition: i64) -> String {
    in_stream(format!("customer:{customer_id}"), partition)
}

/// The queue of notifications of orders on stream `partition` whose delivery has not
/// succeeded yet.
pub fn undelivered(partition: i64) -> String {
    in_stream("undelivered".to_string(), partition)
}

fn page_key(list: &str, page: u64) -> String {
    match page {
        0 => list.to_string(),
        k => format!("{list}:{k}"),
    }
}

fn count_key(list: &str) -> String {
    format!("{list}:pages")
}

fn head_key(list: &str) -> String {
    format!("{list}:head")
}

fn pages(store: &impl PageStore, list: &str) -> anyhow::Result<u64> {
    Ok(store.count(&count_key(list))?.unwrap_or(1).max(1))
}

/// Appends `id` to `list`, unless the last page already holds it (the same notification
/// saved again after a crash).
pub fn append(store: &impl PageStore, list: &str, id: &str) -> anyhow::Result<()> {
    let pages = pages(store, list)?;
    let last = page_key(list, pages - 1);
    let mut ids = store.ids(&last)?;
    if ids.iter().any(|i| i == id) {
        return Ok(());
    }
    if ids.len() < PAGE {
        ids.push(id.to_string());
        return store.set_ids(&last, &ids);
    }
    store.set_count(&count_key(list), pages + 1)?;
    store.set_ids(&page_key(list, pages), &[id.to_string()])
}

/// Removes `id` from the last page of `list` if it is there, the usual place of an id just
/// appended; elsewhere it stays for [`retain`] to drop.
pub fn remove_from_last(store: &impl PageStore, list: &str, id: &str) -> anyhow::Result<()> {
    let last = page_key(list, pages(store, list)? - 1);
    let mut ids = store.ids(&last)?;
    let before = ids.len();
    ids.retain(|i| i != id);
    if ids.len() == before {
        return Ok(());
    }
    store.set_ids(&last, &ids)
}

fn head(store: &impl PageStore, list: &str, pages: u64) -> anyhow::Result<u64> {
    Ok(store.count(&head_key(list))?.unwrap_or(0).min(pages - 1))
}

/// Every id of `list`, oldest first, each once. Reads only; pages before the head are empty
/// (see [`retain`]), so it reads from page 0 without asking where the head is.
pub fn all(store: &impl PageStore, list: &str) -> anyhow::Result<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for page in 0..pages(store, list)? {
        let ids = store.ids(&page_key(list, page))?;
        out.extend(ids.into_iter().filter(|id| seen.insert(id.clone())));
    }
    Ok(out)
}

/// The ids of `list` that `keep` accepts, oldest first, each once. Pages before the last are
/// rewritten without the ids it refuses, and the head moves past those left empty, so a
/// queue costs what it holds, not what ever passed through it.
pub fn retain(
    store: &impl PageStore,
    list: &str,
    mut keep: impl FnMut(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<Vec<String>> {
    let pages = pages(store, list)?;
    let first = head(store, list, pages)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut next_head = first;
    for page in first..pages {
        let key = page_key(list, page);
        let ids = store.ids(&key)?;
        let mut kept = Vec::with_capacity(ids.len());
        for id in &ids {
            if seen.insert(id.clone()) && keep(id)? {
                kept.push(id.clone());
            }
        }
        let closed = page + 1 < pages;
        if closed && kept.len() != ids.len() {
            store.set_ids(&key, &kept)?;
        }
        if closed && kept.is_empty() && next_head == page {
            next_head = page + 1;
        }
        out.extend(kept);
    }
    if next_head != first {
        store.set_count(&head_key(list), next_head)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// An in-memory store that counts reads and writes, and can fail the next page write.
    #[derive(Default)]
    struct Mem {
        lists: RefCell<BTreeMap<String, Vec<String>>>,
        counts: RefCell<BTreeMap<String, u64>>,
        writes: RefCell<usize>,
        reads: RefCell<usize>,
        fail_next_page: RefCell<bool>,
    }

    impl PageStore for Mem {
        fn ids(&self, key: &str) -> anyhow::Result<Vec<String>> {
            *self.reads.borrow_mut() += 1;
            Ok(self.lists.borrow().get(key).cloned().unwrap_or_default())
        }
        fn set_ids(&self, key: &str, ids: &[String]) -> anyhow::Result<()> {
            if self.fail_next_page.replace(false) {
                anyhow::bail!("crashed before writing {key}");
            }
            *self.writes.borrow_mut() += 1;
            self.lists.borrow_mut().insert(key.into(), ids.to_vec());
            Ok(())
        }
        fn count(&self, key: &str) -> anyhow::Result<Option<u64>> {
            *self.reads.borrow_mut() += 1;
            Ok(self.counts.borrow().get(key).copied())
        }
        fn set_count(&self, key: &str, count: u64) -> anyhow::Result<()> {
            *self.writes.borrow_mut() += 1;
            self.counts.borrow_mut().insert(key.into(), count);
            Ok(())
        }
    }

    const C1: &str = "customer:c1";

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn ids_come_back_in_order_across_pages() {
        let store = Mem::default();
        for id in ids(0..250) {
            append(&store, C1, &id).unwrap();
        }
        assert_eq!(all(&store, C1).unwrap(), ids(0..250));
        assert_eq!(store.count("customer:c1:pages").unwrap(), Some(3));
        assert_eq!(store.ids("customer:c1:2").unwrap().len(), 50);
        assert!(all(&store, "customer:c2").unwrap().is_empty());
    }

    #[test]
    fn no_page_grows_past_its_size() {
        let store = Mem::default();
        for id in ids(0..PAGE * 3) {
            append(&store, C1, &id).unwrap();
        }
        for (key, list) in store.lists.borrow().iter() {
            assert!(list.len() <= PAGE, "{key} holds {}", list.len());
        }
    }

    #[test]
    fn saving_the_same_notification_again_indexes_it_once() {
        let store = Mem::default();
        append(&store, C1, "a").unwrap();
        let writes = *store.writes.borrow();
        append(&store, C1, "a").unwrap();
        assert_eq!(*store.writes.borrow(), writes, "nothing written");
        assert_eq!(all(&store, C1).unwrap(), ["a"]);
    }

    #[test]
    fn an_index_kept_as_one_list_is_read_and_extended() {
        let store = Mem::default();
        store.set_ids("customer:c1", &ids(0..150)).unwrap();
        append(&store, C1, "n150").unwrap();
        assert_eq!(all(&store, C1).unwrap(), ids(0..151));
        assert_eq!(store.ids("customer:c1:1").unwrap(), ["n150"]);
    }

    #[test]
    fn a_crash_between_counter_and_page_loses_nothing_already_indexed() {
        let store = Mem::default();
        for id in ids(0..PAGE) {
            append(&store, C1, &id).unwrap();
        }
        *store.fail_next_page.borrow_mut() = true;
        assert!(append(&store, C1, "late").is_err());
        assert_eq!(all(&store, C1).unwrap(), ids(0..PAGE));
        append(&store, C1, "late").unwrap();
        let mut want = ids(0..PAGE);
        want.push("late".into());
        assert_eq!(all(&store, C1).unwrap(), want);
    }

    const UNDELIVERED: &str = "undelivered";

    #[test]
    fn lists_are_split_by_stream_and_stream_0_keeps_its_keys() {
        assert_eq!(customer("c1", 0), C1);
        assert_eq!(customer("c1", 3), "customer:c1~3");
        assert_eq!(undelivered(0), UNDELIVERED);
        assert_eq!(undelivered(2), "undelivered~2");
    }

    /// A queue of 3 pages, then everything but `n250` delivered.
    fn drained_queue() -> Mem {
        let store = Mem::default();
        for id in ids(0..250) {
            append(&store, UNDELIVERED, &id).unwrap();
        }
        let kept = retain(&store, UNDELIVERED, |id| Ok(id == "n120" || id == "n249")).unwrap();
        assert_eq!(kept, ["n120", "n249"]);
        store
    }

    #[test]
    fn retain_drops_refused_ids_and_moves_the_head_past_emptied_pages() {
        let store = drained_queue();
        assert!(store.ids(UNDELIVERED).unwrap().is_empty());
        assert_eq!(store.ids("undelivered:1").unwrap(), ["n120"]);
        assert_eq!(store.count("undelivered:head").unwrap(), Some(1));
        // The last page is the one appends write: left as it stands.
        assert_eq!(store.ids("undelivered:2").unwrap(), ids(200..250));
        assert_eq!(
            all(&store, UNDELIVERED).unwrap(),
            ["n120"]
                .into_iter()
                .map(String::from)
                .chain(ids(200..250))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_drained_queue_is_read_from_its_head_only() {
        let store = drained_queue();
        let before = *store.reads.borrow();
        let kept = retain(&store, UNDELIVERED, |_| Ok(true)).unwrap();
        assert_eq!(kept.len(), 51);
        // pages, head, then pages 1 and 2: page 0 is not read again.
        assert_eq!(*store.reads.borrow() - before, 4);
    }

    #[test]
    fn removing_the_newest_id_writes_the_last_page_only() {
        let store = Mem::default();
        for id in ids(0..150) {
            append(&store, UNDELIVERED, &id).unwrap();
        }
        let writes = *store.writes.borrow();
        remove_from_last(&store, UNDELIVERED, "n149").unwrap();
        remove_from_last(&store, UNDELIVERED, "n3").unwrap();
        assert_eq!(*store.writes.borrow() - writes, 1);
        let left = all(&store, UNDELIVERED).unwrap();
        assert_eq!(left, ids(0..149));
    }

    #[test]
    fn an_id_queued_twice_is_kept_once() {
        let store = Mem::default();
        for id in ids(0..PAGE) {
            append(&store, UNDELIVERED, &id).unwrap();
        }
        append(&store, UNDELIVERED, "n5").unwrap();
        append(&store, UNDELIVERED, "late").unwrap();
        let kept = retain(&store, UNDELIVERED, |_| Ok(true)).unwrap();
        let mut want = ids(0..PAGE);
        want.push("late".into());
        assert_eq!(kept, want);
    }
}
