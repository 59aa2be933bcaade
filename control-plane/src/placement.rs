//! Slot placement: how `CreateCluster` splits the 16384 slots over the masters, exactly as
//! `redis-cli --cluster create` does (so an operator sees the ranges Redis would have chosen).

use tessera_proto::slot::SLOT_COUNT;

/// The inclusive slot range each of `masters` masters gets, in order.
///
/// redis-cli's rule, float arithmetic and rounding included: each master gets
/// `round(cursor + 16384 / masters - 1)` as its last slot, the last master gets everything left.
pub fn split_slots(masters: usize) -> Vec<(u16, u16)> {
    let total = f64::from(SLOT_COUNT);
    let per_node = total / masters.max(1) as f64;
    let mut cursor = 0.0_f64;
    let mut first: i64 = 0;
    let mut ranges = Vec::with_capacity(masters);
    for i in 0..masters {
        // `f64::round` rounds half away from zero, as C's lround does.
        let mut last = (cursor + per_node - 1.0).round() as i64;
        if last > i64::from(SLOT_COUNT) || i == masters - 1 {
            last = i64::from(SLOT_COUNT) - 1;
        }
        if last < first {
            last = first;
        }
        let clamp = |slot: i64| slot.clamp(0, i64::from(SLOT_COUNT) - 1) as u16;
        ranges.push((clamp(first), clamp(last)));
        first = last + 1;
        cursor += per_node;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_masters_match_redis_cli() {
        assert_eq!(
            split_slots(3),
            vec![(0, 5460), (5461, 10922), (10923, 16383)]
        );
    }

    #[test]
    fn other_counts_match_redis_cli() {
        assert_eq!(
            split_slots(4),
            vec![(0, 4095), (4096, 8191), (8192, 12287), (12288, 16383)]
        );
        assert_eq!(
            split_slots(5),
            vec![
                (0, 3276),
                (3277, 6553),
                (6554, 9829),
                (9830, 13106),
                (13107, 16383)
            ]
        );
        assert_eq!(
            split_slots(6),
            vec![
                (0, 2730),
                (2731, 5460),
                (5461, 8191),
                (8192, 10922),
                (10923, 13652),
                (13653, 16383)
            ]
        );
    }

    #[test]
    fn every_split_covers_all_slots_once() {
        for masters in 1..=64 {
            let ranges = split_slots(masters);
            assert_eq!(ranges.len(), masters);
            let mut next = 0u32;
            for (first, last) in ranges {
                assert_eq!(u32::from(first), next, "{masters} masters");
                assert!(last >= first);
                next = u32::from(last) + 1;
            }
            assert_eq!(next, 16384, "{masters} masters");
        }
    }
}
