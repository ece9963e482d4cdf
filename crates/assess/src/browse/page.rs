//! Cutting a sorted list into pages with keyset cursors: a cursor names
//! the last entry shown (its sort key and id), so a page never repeats or
//! skips an entry when the list changes between requests.

use super::{BrowseError, Page};
use serde::{Deserialize, Serialize};

pub(super) fn sev_rank(s: &str) -> i64 {
    match s {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

/// A sort key of a list entry.
#[derive(Debug, Clone, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum K {
    N(i64),
    S(String),
}

fn encode_cursor(k: &K, id: &str) -> String {
    hex::encode(serde_json::to_vec(&(k, id)).unwrap_or_default())
}

fn decode_cursor(c: &str) -> Result<(K, String), BrowseError> {
    hex::decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(BrowseError::BadCursor)
}

/// Sort by (key, id) and cut one page after `cursor`.
pub(super) fn paginate<T>(
    mut items: Vec<(K, String, T)>,
    descending: bool,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<T>, BrowseError> {
    items.sort_by(|a, b| {
        let o =
            a.0.partial_cmp(&b.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.1.cmp(&b.1));
        if descending { o.reverse() } else { o }
    });
    let total = items.len();
    let start = match cursor {
        None => 0,
        Some(c) => {
            let (k, id) = decode_cursor(c)?;
            items.partition_point(|x| {
                let o =
                    x.0.partial_cmp(&k)
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then_with(|| x.1.cmp(&id));
                if descending { o.is_ge() } else { o.is_le() }
            })
        }
    };
    let limit = limit.clamp(1, 500);
    let end = (start + limit).min(total);
    let next = (end < total).then(|| encode_cursor(&items[end - 1].0, &items[end - 1].1));
    Ok(Page {
        items: items.drain(start..end).map(|x| x.2).collect(),
        total,
        next,
        as_of: String::new(),
    })
}

pub(super) fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(needle)
}
