//! Which live member should own a region: rendezvous (highest random
//! weight) hashing. Every member computes the same answer from the same
//! member list, a region moves only when its chosen member leaves or a
//! member that scores higher for it joins, and regions spread evenly.

use sha2::{Digest, Sha256};

/// The weight of `member` for `region`: the first 8 bytes of
/// SHA-256(member ‖ 0 ‖ region).
fn weight(member: &str, region: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(member.as_bytes());
    h.update([0]);
    h.update(region.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The member that should own `region` (ties, which need a SHA-256
/// collision on 64 bits, go to the smaller name). `None` without members.
pub fn owner<'a>(members: &'a [String], region: &str) -> Option<&'a str> {
    members
        .iter()
        .map(|m| (weight(m, region), std::cmp::Reverse(m.as_str())))
        .max()
        .map(|(_, std::cmp::Reverse(m))| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("origin-{i}")).collect()
    }

    #[test]
    fn every_member_agrees_and_order_does_not_matter() {
        let a = names(3);
        let mut b = a.clone();
        b.reverse();
        for r in 0..50 {
            let region = format!("city-{r}");
            assert_eq!(owner(&a, &region), owner(&b, &region));
        }
        assert_eq!(owner(&[], "sf"), None);
    }

    #[test]
    fn regions_spread_and_move_only_to_or_from_the_changed_member() {
        let three = names(3);
        let regions: Vec<String> = (0..300).map(|r| format!("city-{r}")).collect();
        let mut per = std::collections::HashMap::new();
        for r in &regions {
            *per.entry(owner(&three, r).expect("owner")).or_insert(0) += 1;
        }
        // 100 each on average; rendezvous hashing keeps every member near it.
        assert!(per.values().all(|n| (70..=130).contains(n)), "{per:?}");
        // A fourth member joins: regions move only to it.
        let four = names(4);
        let mut moved = 0;
        for r in &regions {
            let (before, after) = (owner(&three, r), owner(&four, r));
            if before != after {
                assert_eq!(after, Some("origin-3"));
                moved += 1;
            }
        }
        assert!((45..=105).contains(&moved), "{moved} of 300 moved");
        // A member leaves: only its regions move.
        let two: Vec<String> = three.iter().filter(|m| *m != "origin-1").cloned().collect();
        for r in &regions {
            if owner(&three, r) != Some("origin-1") {
                assert_eq!(owner(&two, r), owner(&three, r));
            }
        }
    }
}
