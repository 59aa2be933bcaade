//! Redis's `pqsort` (pqsort.c: the NetBSD libc quicksort, Bentley & McIlroy's, changed to sort
//! only the partitions that overlap a range of positions), ported step for step. SORT with BY and
//! LIMIT, and geo searches with COUNT, sort with it: it is not stable, so elements that compare
//! equal come out in its order, which only the same algorithm reproduces.

use std::cmp::Ordering;

/// Sorts `v` enough that positions `lrange..=rrange` hold what a full sort would put there.
pub fn pqsort<T>(
    v: &mut [T],
    cmp: &mut impl FnMut(&T, &T) -> Ordering,
    lrange: usize,
    rrange: usize,
) {
    let n = v.len();
    sort_part(v, 0, n, cmp, (lrange, rrange));
}

/// Whether positions `lo..lo + n` overlap the wanted range (pqsort.c's `_l`/`_r` test).
fn overlaps(lo: usize, n: usize, (l, r): (usize, usize)) -> bool {
    !(r < lo || l >= lo + n)
}

/// med3: the index of the median of three by `cmp`, chosen as the C code chooses it.
fn med3<T>(
    v: &[T],
    cmp: &mut impl FnMut(&T, &T) -> Ordering,
    a: usize,
    b: usize,
    c: usize,
) -> usize {
    if cmp(&v[a], &v[b]).is_lt() {
        if cmp(&v[b], &v[c]).is_lt() {
            b
        } else if cmp(&v[a], &v[c]).is_lt() {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]).is_gt() {
        b
    } else if cmp(&v[a], &v[c]).is_lt() {
        a
    } else {
        c
    }
}

fn insertion_sort<T>(v: &mut [T], lo: usize, n: usize, cmp: &mut impl FnMut(&T, &T) -> Ordering) {
    for pm in lo + 1..lo + n {
        let mut pl = pm;
        while pl > lo && cmp(&v[pl - 1], &v[pl]).is_gt() {
            v.swap(pl, pl - 1);
            pl -= 1;
        }
    }
}

/// `vecswap`: swaps `n` elements from `a` with `n` from `b`, one pair at a time.
fn vecswap<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

/// `_pqsort` on the `n` elements from `lo`.
fn sort_part<T>(
    v: &mut [T],
    mut lo: usize,
    mut n: usize,
    cmp: &mut impl FnMut(&T, &T) -> Ordering,
    range: (usize, usize),
) {
    loop {
        if n < 7 {
            insertion_sort(v, lo, n, cmp);
            return;
        }
        let mut pm = lo + n / 2;
        if n > 7 {
            let mut pl = lo;
            let mut pn = lo + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, cmp, pl, pl + d, pl + 2 * d);
                pm = med3(v, cmp, pm - d, pm, pm + d);
                pn = med3(v, cmp, pn - 2 * d, pn - d, pn);
            }
            pm = med3(v, cmp, pl, pm, pn);
        }
        v.swap(lo, pm);
        let (mut pa, mut pb) = (lo + 1, lo + 1);
        let (mut pc, mut pd) = (lo + n - 1, lo + n - 1);
        let mut swapped = false;
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[lo]);
                if c.is_gt() {
                    break;
                }
                if c.is_eq() {
                    swapped = true;
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[lo]);
                if c.is_lt() {
                    break;
                }
                if c.is_eq() {
                    swapped = true;
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            swapped = true;
            pb += 1;
            pc -= 1;
        }
        if !swapped {
            insertion_sort(v, lo, n, cmp);
            return;
        }
        let pn = lo + n;
        let r = (pa - lo).min(pb - pa);
        vecswap(v, lo, pb - r, r);
        let r = (pd - pc).min(pn - pd - 1);
        vecswap(v, pb, pn - r, r);
        let r = pb - pa;
        if r > 1 && overlaps(lo, r, range) {
            sort_part(v, lo, r, cmp, range);
        }
        let r = pd - pc;
        if r > 1 {
            lo = pn - r;
            n = r;
            if overlaps(lo, n, range) {
                continue;
            }
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wanted positions hold what a full sort puts there, whatever the input.
    #[test]
    fn the_range_is_sorted() {
        let mut seed = 12345u64;
        for len in [0usize, 1, 5, 7, 8, 40, 41, 100, 300] {
            for _ in 0..20 {
                let v: Vec<u32> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((seed >> 33) % 50) as u32
                    })
                    .collect();
                let mut full = v.clone();
                full.sort();
                for (l, r) in [(0, 0), (0, 4), (3, 9), (10, 200)] {
                    if len == 0 || l >= len {
                        continue;
                    }
                    let r = r.min(len - 1);
                    let mut part = v.clone();
                    pqsort(&mut part, &mut |a, b| a.cmp(b), l, r);
                    assert_eq!(part[l..=r], full[l..=r], "len {len} range {l}..={r}");
                }
            }
        }
    }
}
