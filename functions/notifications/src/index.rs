//! A customer's notification ids, kept in pages of the key-value store.
//!
//! Why pages: the store has no range reads, so an index is a value. As one list it was read,
//! parsed and written whole on every notification, which made each notification cost grow
//! with the customer's history (a customer with 10 000 orders rewrote a 550 KB value per
//! order). In pages, an append reads and writes the last page and a counter only.
//!
//! Keys: `customer:<id>` is page 0 (so an index written as one list is page 0 as it stands),
//! `customer:<id>:<k>` page k, `customer:<id>:pages` how many pages there are (absent: 1).
//! Customer ids hold no `:` (`is_plain_id`), so these keys never collide.
//! The store has no transactions: the counter is written before a new page, so a crash in
//! between leaves an empty page, which reads as such, never a page the counter skips.
//! Nor has it compare-and-swap: two instances appending to one customer's index at the same
//! moment can lose one id, as with the single list before. Appends come from the Redis
//! handler, one message at a time, and from the catch-up sweep.

/// Ids per page.
pub const PAGE: usize = 100;

/// The store as the index sees it.
pub trait PageStore {
    /// The ids under `key`; empty when absent.
    fn ids(&self, key: &str) -> anyhow::Result<Vec<String>>;
    fn set_ids(&self, key: &str, ids: &[String]) -> anyhow::Result<()>;
    fn count(&self, key: &str) -> anyhow::Result<Option<u64>>;
    fn set_count(&self, key: &str, count: u64) -> anyhow::Result<()>;
}

fn page_key(customer_id: &str, page: u64) -> String {
    match page {
        0 => format!("customer:{customer_id}"),
        k => format!("customer:{customer_id}:{k}"),
    }
}

fn count_key(customer_id: &str) -> String {
    format!("customer:{customer_id}:pages")
}

fn pages(store: &impl PageStore, customer_id: &str) -> anyhow::Result<u64> {
    Ok(store.count(&count_key(customer_id))?.unwrap_or(1).max(1))
}

/// Appends `id` to the customer's index, unless the last page already holds it (the same
/// notification saved again after a crash).
pub fn append(store: &impl PageStore, customer_id: &str, id: &str) -> anyhow::Result<()> {
    let pages = pages(store, customer_id)?;
    let last = page_key(customer_id, pages - 1);
    let mut ids = store.ids(&last)?;
    if ids.iter().any(|i| i == id) {
        return Ok(());
    }
    if ids.len() < PAGE {
        ids.push(id.to_string());
        return store.set_ids(&last, &ids);
    }
    store.set_count(&count_key(customer_id), pages + 1)?;
    store.set_ids(&page_key(customer_id, pages), &[id.to_string()])
}

/// Every id of the customer's index, oldest first, each once.
pub fn all(store: &impl PageStore, customer_id: &str) -> anyhow::Result<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for page in 0..pages(store, customer_id)? {
        for id in store.ids(&page_key(customer_id, page))? {
            if seen.insert(id.clone()) {
                out.push(id);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// An in-memory store that counts writes, and can fail the next page write.
    #[derive(Default)]
    struct Mem {
        lists: RefCell<BTreeMap<String, Vec<String>>>,
        counts: RefCell<BTreeMap<String, u64>>,
        writes: RefCell<usize>,
        fail_next_page: RefCell<bool>,
    }

    impl PageStore for Mem {
        fn ids(&self, key: &str) -> anyhow::Result<Vec<String>> {
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
            Ok(self.counts.borrow().get(key).copied())
        }
        fn set_count(&self, key: &str, count: u64) -> anyhow::Result<()> {
            *self.writes.borrow_mut() += 1;
            self.counts.borrow_mut().insert(key.into(), count);
            Ok(())
        }
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn ids_come_back_in_order_across_pages() {
        let store = Mem::default();
        for id in ids(0..250) {
            append(&store, "c1", &id).unwrap();
        }
        assert_eq!(all(&store, "c1").unwrap(), ids(0..250));
        assert_eq!(store.count("customer:c1:pages").unwrap(), Some(3));
        assert_eq!(store.ids("customer:c1:2").unwrap().len(), 50);
        assert!(all(&store, "c2").unwrap().is_empty());
    }

    #[test]
    fn no_page_grows_past_its_size() {
        let store = Mem::default();
        for id in ids(0..PAGE * 3) {
            append(&store, "c1", &id).unwrap();
        }
        for (key, list) in store.lists.borrow().iter() {
            assert!(list.len() <= PAGE, "{key} holds {}", list.len());
        }
    }

    #[test]
    fn saving_the_same_notification_again_indexes_it_once() {
        let store = Mem::default();
        append(&store, "c1", "a").unwrap();
        let writes = *store.writes.borrow();
        append(&store, "c1", "a").unwrap();
        assert_eq!(*store.writes.borrow(), writes, "nothing written");
        assert_eq!(all(&store, "c1").unwrap(), ["a"]);
    }

    #[test]
    fn an_index_kept_as_one_list_is_read_and_extended() {
        let store = Mem::default();
        store.set_ids("customer:c1", &ids(0..150)).unwrap();
        append(&store, "c1", "n150").unwrap();
        assert_eq!(all(&store, "c1").unwrap(), ids(0..151));
        assert_eq!(store.ids("customer:c1:1").unwrap(), ["n150"]);
    }

    #[test]
    fn a_crash_between_counter_and_page_loses_nothing_already_indexed() {
        let store = Mem::default();
        for id in ids(0..PAGE) {
            append(&store, "c1", &id).unwrap();
        }
        *store.fail_next_page.borrow_mut() = true;
        assert!(append(&store, "c1", "late").is_err());
        assert_eq!(all(&store, "c1").unwrap(), ids(0..PAGE));
        append(&store, "c1", "late").unwrap();
        let mut want = ids(0..PAGE);
        want.push("late".into());
        assert_eq!(all(&store, "c1").unwrap(), want);
    }
}
