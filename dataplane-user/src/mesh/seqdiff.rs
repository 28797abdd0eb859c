//! Which elements of a list changed between two applies, in time
//! proportional to the list plus the change — and usually with no hashing
//! at all.
//!
//! The control plane hands over whole lists (services, endpoints), almost
//! always in the same order as last time, with a few elements added,
//! removed or edited. So the common prefix and suffix are skipped by plain
//! equality (a scan of small structs), and only the window in between is
//! matched by key. A reordered list makes the window the whole list: still
//! correct, just no cheaper than a full compare.

use std::hash::Hash;

use super::fast::FastMap;

/// The difference between two lists of elements with unique keys.
#[derive(Debug)]
pub(super) struct ListDiff<'a, T> {
    /// Elements `window.0..window.1` of the old list were replaced by
    /// `window.0..window.2` of the new one; everything else is equal.
    pub window: (usize, usize, usize),
    pub removed: Vec<&'a T>,
    pub added: Vec<&'a T>,
    /// Same key, different contents: (old, new).
    pub changed: Vec<(&'a T, &'a T)>,
}

impl<'a, T> ListDiff<'a, T> {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty() && self.changed.is_empty()
    }

    /// Every old version that goes away or is replaced.
    pub fn olds(&self) -> impl Iterator<Item = &'a T> {
        self.removed
            .iter()
            .copied()
            .chain(self.changed.iter().map(|(old, _)| *old))
    }

    /// Every new version that comes in or replaces an old one.
    pub fn news(&self) -> impl Iterator<Item = &'a T> {
        self.added
            .iter()
            .copied()
            .chain(self.changed.iter().map(|(_, new)| *new))
    }
}

/// A key appears twice in the new list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DuplicateKey;

/// Diff `old` (whose keys are unique) against `new`. `in_old(k)` tells
/// whether `old` has key `k` anywhere — an index the caller keeps — so
/// that a new element duplicating one outside the window is caught
/// without looking at the whole list.
pub(super) fn diff<'a, T, K>(
    old: &'a [T],
    new: &'a [T],
    key: impl Fn(&'a T) -> K,
    in_old: impl Fn(&K) -> bool,
) -> Result<ListDiff<'a, T>, DuplicateKey>
where
    T: PartialEq,
    K: Hash + Eq,
{
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old_window = &old[prefix..old.len() - suffix];
    let new_window = &new[prefix..new.len() - suffix];
    let mut out = ListDiff {
        window: (prefix, old.len() - suffix, new.len() - suffix),
        removed: Vec::new(),
        added: Vec::new(),
        changed: Vec::new(),
    };
    if old_window.is_empty() && new_window.is_empty() {
        return Ok(out);
    }
    // Old elements of the window by key; `None` once matched.
    let mut unmatched: FastMap<K, Option<&'a T>> =
        old_window.iter().map(|t| (key(t), Some(t))).collect();
    let mut seen: FastMap<K, ()> = FastMap::default();
    for t in new_window {
        let k = key(t);
        match unmatched.get_mut(&k) {
            Some(slot) => match slot.take() {
                Some(was) if was == t => {}
                Some(was) => out.changed.push((was, t)),
                None => return Err(DuplicateKey),
            },
            None => {
                // Not in the old window: new, unless the old list has it
                // outside the window, where the new list has it too.
                if in_old(&k) || seen.insert(k, ()).is_some() {
                    return Err(DuplicateKey);
                }
                out.added.push(t);
            }
        }
    }
    out.removed = old_window
        .iter()
        .filter(|t| unmatched.get(&key(t)).is_some_and(Option::is_some))
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys removed, added and changed, each sorted.
    type Keys = (Vec<u8>, Vec<u8>, Vec<u8>);

    fn run(old: &[(u8, u8)], new: &[(u8, u8)]) -> Result<Keys, DuplicateKey> {
        let d = diff(old, new, |t| t.0, |k| old.iter().any(|t| t.0 == *k))?;
        let mut removed: Vec<u8> = d.removed.iter().map(|t| t.0).collect();
        let mut added: Vec<u8> = d.added.iter().map(|t| t.0).collect();
        let mut changed: Vec<u8> = d.changed.iter().map(|(o, _)| o.0).collect();
        removed.sort();
        added.sort();
        changed.sort();
        Ok((removed, added, changed))
    }

    #[test]
    fn equal_lists_have_an_empty_window() {
        let l = [(1, 0), (2, 0), (3, 0)];
        let d = diff(&l, &l, |t| t.0, |_| true).expect("no duplicates");
        assert!(d.is_empty());
        assert_eq!(d.window, (3, 3, 3));
    }

    #[test]
    fn appends_edits_removals_and_moves() {
        let old = [(1, 0), (2, 0), (3, 0), (4, 0)];
        assert_eq!(
            run(&old, &[(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]),
            Ok((vec![], vec![5], vec![]))
        );
        assert_eq!(
            run(&old, &[(1, 0), (2, 9), (4, 0)]),
            Ok((vec![3], vec![], vec![2]))
        );
        assert_eq!(
            run(&old, &[(4, 0), (3, 0), (2, 0), (1, 0)]),
            Ok((vec![], vec![], vec![])),
            "a reordered list is unchanged"
        );
        assert_eq!(run(&old, &[]), Ok((vec![1, 2, 3, 4], vec![], vec![])));
        assert_eq!(run(&[], &old), Ok((vec![], vec![1, 2, 3, 4], vec![])));
    }

    #[test]
    fn duplicates_are_caught_inside_and_outside_the_window() {
        let old = [(1, 0), (2, 0), (3, 0)];
        // 1 is outside the window (prefix); the window adds another 1.
        assert_eq!(run(&old, &[(1, 0), (1, 5), (3, 0)]), Err(DuplicateKey));
        // Twice in the window, both new.
        assert_eq!(
            run(&old, &[(1, 0), (7, 0), (7, 1), (3, 0)]),
            Err(DuplicateKey)
        );
        // Twice in the window, one of them matching an old element.
        assert_eq!(
            run(&old, &[(1, 0), (2, 0), (2, 1), (3, 0)]),
            Err(DuplicateKey)
        );
    }
}
