//! Merging the server nodes' scan pages into one key-ordered batch (kivaloo's RANGE).
//!
//! Every node answers with up to `limit` of its own keys after the cursor, in key order. Keys
//! live on REPLICA+1 nodes, so the same key comes from several nodes: the highest version wins.
//! A node that says it has more stops being complete after its last key, so the batch is cut
//! there: no key beyond it may be returned, because that node may still hold a smaller one.
//! The batch's cursor is its last key; the next call continues strictly after it.

use std::collections::BTreeMap;

use crate::proto::{Item, ScanPage};

/// Merges node pages into at most `limit` items and the cursor to continue from.
pub fn merge_pages(pages: Vec<ScanPage>, limit: usize) -> (Vec<Item>, Option<Vec<u8>>) {
    let limit = limit.max(1);
    // The smallest "I have more after this key" of all nodes bounds what is known complete.
    let bound: Option<Vec<u8>> = pages
        .iter()
        .filter_map(|p| {
            let more = p.next_cursor.as_ref()?;
            Some(
                p.items
                    .last()
                    .map_or_else(|| more.clone(), |i| i.key.clone()),
            )
        })
        .min();
    let mut merged: BTreeMap<Vec<u8>, Item> = BTreeMap::new();
    for item in pages.into_iter().flat_map(|p| p.items) {
        if bound.as_ref().is_some_and(|b| item.key > *b) {
            continue;
        }
        match merged.get(&item.key) {
            Some(have) if have.version >= item.version => {}
            _ => {
                merged.insert(item.key.clone(), item);
            }
        }
    }
    let truncated = merged.len() > limit;
    let items: Vec<Item> = merged.into_values().take(limit).collect();
    let more = truncated || bound.is_some();
    let cursor = if more {
        items.last().map(|i| i.key.clone())
    } else {
        None
    };
    (items, cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(k: &str, v: u64) -> Item {
        Item {
            key: k.as_bytes().to_vec(),
            value: v.to_string().into_bytes(),
            version: v,
            ..Item::default()
        }
    }

    fn page(keys: &[(&str, u64)], more: bool) -> ScanPage {
        let items: Vec<Item> = keys.iter().map(|(k, v)| item(k, *v)).collect();
        let next_cursor = if more {
            items.last().map(|i| i.key.clone())
        } else {
            None
        };
        ScanPage { items, next_cursor }
    }

    fn keys(items: &[Item]) -> Vec<&str> {
        items
            .iter()
            .map(|i| std::str::from_utf8(&i.key).unwrap())
            .collect()
    }

    #[test]
    fn merges_in_order_dedups_replicas_keeping_the_newest() {
        let (items, cursor) = merge_pages(
            vec![
                page(&[("a", 1), ("c", 5)], false),
                page(&[("b", 2), ("c", 9)], false),
                page(&[("d", 3)], false),
            ],
            10,
        );
        assert_eq!(keys(&items), ["a", "b", "c", "d"]);
        assert_eq!(items[2].version, 9);
        assert_eq!(cursor, None);
    }

    #[test]
    fn cuts_at_the_smallest_incomplete_node_and_at_the_limit() {
        // Node 1 has more after "b": nothing after "b" may be returned yet.
        let (items, cursor) = merge_pages(
            vec![
                page(&[("a", 1), ("b", 1)], true),
                page(&[("c", 1), ("d", 1)], false),
            ],
            10,
        );
        assert_eq!(keys(&items), ["a", "b"]);
        assert_eq!(cursor.as_deref(), Some(&b"b"[..]));
        let (items, cursor) = merge_pages(
            vec![
                page(&[("a", 1), ("c", 1)], false),
                page(&[("b", 1), ("d", 1)], false),
            ],
            3,
        );
        assert_eq!(keys(&items), ["a", "b", "c"]);
        assert_eq!(cursor.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn paging_through_a_model_visits_every_key_once_in_order() {
        // Three nodes, each key on two of them; pages of 3 per node and per batch.
        let all: Vec<String> = (0..50).map(|i| format!("k{i:03}")).collect();
        let nodes: Vec<Vec<&String>> = (0..3)
            .map(|n| {
                all.iter()
                    .enumerate()
                    .filter(|(i, _)| i % 3 != n)
                    .map(|(_, k)| k)
                    .collect()
            })
            .collect();
        let mut cursor: Option<Vec<u8>> = None;
        let mut seen = Vec::new();
        for _ in 0..100 {
            let pages = nodes
                .iter()
                .map(|keys| {
                    let after: Vec<&&String> = keys
                        .iter()
                        .filter(|k| cursor.as_ref().is_none_or(|c| k.as_bytes() > c.as_slice()))
                        .collect();
                    let got: Vec<(&str, u64)> =
                        after.iter().take(3).map(|k| (k.as_str(), 1)).collect();
                    page(&got, after.len() > 3)
                })
                .collect();
            let (items, next) = merge_pages(pages, 3);
            seen.extend(items.into_iter().map(|i| String::from_utf8(i.key).unwrap()));
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen, all);
    }
}
