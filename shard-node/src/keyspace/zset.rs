//! The sorted set: members with scores, ordered by (score, member) as Redis orders them.
//!
//! Members are held twice: by name in a `ScanTable` (O(1) ZSCORE, and the table ZSCAN pages
//! through with Redis's cursor) and in order in a treap whose
//! nodes count their subtree, so insert, remove, rank (ZRANK) and the n-th member (ZRANGE by
//! index) are all O(log n) expected, as with Redis's skip list with spans. A treap, not a skip
//! list, because it needs no unsafe code: a randomized binary search tree, balanced in
//! expectation by a random priority per node (a heap on priorities, a search tree on members).

use std::cmp::Ordering;

use bytes::Bytes;

use super::scan_table::ScanTable;

/// Members by name (for ZSCORE) and in order (for ranges and ranks).
#[derive(Debug, Clone, Default)]
pub struct SortedSet {
    /// Members by name, in a table ZSCAN can page through with a cursor.
    scores: ScanTable<(Bytes, f64)>,
    order: Link,
}

/// Two sets are equal when they hold the same members with the same scores; the tree's shape
/// depends on random priorities and does not count.
impl PartialEq for SortedSet {
    fn eq(&self, other: &Self) -> bool {
        self.scores == other.scores
    }
}

type Link = Option<Box<Node>>;

/// A treap node: `size` counts the nodes of its subtree, itself included.
#[derive(Debug, Clone)]
struct Node {
    item: ScoredMember,
    priority: u64,
    size: usize,
    left: Link,
    right: Link,
}

impl Node {
    fn update(&mut self) {
        self.size = 1 + size(&self.left) + size(&self.right);
    }
}

fn size(link: &Link) -> usize {
    link.as_ref().map_or(0, |n| n.size)
}

/// Splits `link` into the items for which `goes_left` holds (a prefix of the order) and the rest.
fn split(link: Link, goes_left: &dyn Fn(&ScoredMember) -> bool) -> (Link, Link) {
    match link {
        None => (None, None),
        Some(mut node) => {
            if goes_left(&node.item) {
                let (l, r) = split(node.right.take(), goes_left);
                node.right = l;
                node.update();
                (Some(node), r)
            } else {
                let (l, r) = split(node.left.take(), goes_left);
                node.left = r;
                node.update();
                (l, Some(node))
            }
        }
    }
}

/// Joins two treaps, every item of `a` ordered before every item of `b`.
fn merge(a: Link, b: Link) -> Link {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(mut a), Some(mut b)) => {
            if a.priority > b.priority {
                a.right = merge(a.right.take(), Some(b));
                a.update();
                Some(a)
            } else {
                b.left = merge(Some(a), b.left.take());
                b.update();
                Some(b)
            }
        }
    }
}

/// How many items lead the order while `pred` holds, found by one descent as Redis's skip list
/// search does (exact when `pred` holds for a prefix of the order).
fn count_while(mut link: &Link, pred: impl Fn(&ScoredMember) -> bool) -> usize {
    let mut count = 0;
    while let Some(node) = link {
        if pred(&node.item) {
            count += size(&node.left) + 1;
            link = &node.right;
        } else {
            link = &node.left;
        }
    }
    count
}

/// The item at 0-based position `index` of the order.
fn nth(mut link: &Link, mut index: usize) -> Option<&ScoredMember> {
    while let Some(node) = link {
        let left = size(&node.left);
        match index.cmp(&left) {
            Ordering::Less => link = &node.left,
            Ordering::Equal => return Some(&node.item),
            Ordering::Greater => {
                index -= left + 1;
                link = &node.right;
            }
        }
    }
    None
}

/// An entry of the order: by score, then by member bytes. Scores are never NaN, and -0 compares
/// equal to 0 (as Redis's `<`/`==` comparisons do).
#[derive(Debug, Clone)]
struct ScoredMember {
    score: f64,
    member: Bytes,
}

impl PartialEq for ScoredMember {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ScoredMember {}

impl PartialOrd for ScoredMember {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ScoredMember {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_score = if self.score < other.score {
            Ordering::Less
        } else if self.score > other.score {
            Ordering::Greater
        } else {
            Ordering::Equal
        };
        by_score.then_with(|| self.member.cmp(&other.member))
    }
}

/// A score interval as ZRANGEBYSCORE takes it: `(` makes a bound exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRange {
    pub min: f64,
    pub min_exclusive: bool,
    pub max: f64,
    pub max_exclusive: bool,
}

impl ScoreRange {
    pub fn above_min(&self, score: f64) -> bool {
        if self.min_exclusive {
            score > self.min
        } else {
            score >= self.min
        }
    }

    pub fn below_max(&self, score: f64) -> bool {
        if self.max_exclusive {
            score < self.max
        } else {
            score <= self.max
        }
    }

    pub fn contains(&self, score: f64) -> bool {
        self.above_min(score) && self.below_max(score)
    }

    /// Whether no score can be inside (Redis checks this before looking at the set).
    pub fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.min_exclusive || self.max_exclusive))
    }
}

/// One end of a lex interval: `-` and `+` are below and above every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexBound {
    NegInf,
    PosInf,
    Inclusive(Bytes),
    Exclusive(Bytes),
}

/// A member interval as ZRANGEBYLEX takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

impl LexRange {
    pub fn above_min(&self, member: &[u8]) -> bool {
        match &self.min {
            LexBound::NegInf => true,
            LexBound::PosInf => false,
            LexBound::Inclusive(m) => member >= &m[..],
            LexBound::Exclusive(m) => member > &m[..],
        }
    }

    pub fn below_max(&self, member: &[u8]) -> bool {
        match &self.max {
            LexBound::NegInf => false,
            LexBound::PosInf => true,
            LexBound::Inclusive(m) => member <= &m[..],
            LexBound::Exclusive(m) => member < &m[..],
        }
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.above_min(member) && self.below_max(member)
    }

    /// As Redis's zslIsInLexRange pre-check: `-` and `+` count as exclusive bounds.
    pub fn is_empty(&self) -> bool {
        fn key(b: &LexBound) -> (u8, &[u8], bool) {
            match b {
                LexBound::NegInf => (0, &[], true),
                LexBound::Inclusive(m) => (1, m, false),
                LexBound::Exclusive(m) => (1, m, true),
                LexBound::PosInf => (2, &[], true),
            }
        }
        let (a, am, aex) = key(&self.min);
        let (b, bm, bex) = key(&self.max);
        match (a, am).cmp(&(b, bm)) {
            Ordering::Greater => true,
            Ordering::Equal => aex || bex,
            Ordering::Less => false,
        }
    }
}

impl SortedSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).map(|(_, score)| *score)
    }

    /// Sets `member`'s score; returns the previous one. A -0 score is stored as 0, as Redis
    /// replies with it.
    pub fn insert(&mut self, member: Bytes, score: f64) -> Option<f64> {
        let score = if score == 0.0 { 0.0 } else { score };
        let previous = self.remove(&member);
        self.scores.insert((member.clone(), score));
        let item = ScoredMember { score, member };
        let (left, right) = split(self.order.take(), &|x| *x < item);
        let node = Box::new(Node {
            item,
            priority: rand::random(),
            size: 1,
            left: None,
            right: None,
        });
        self.order = merge(merge(left, Some(node)), right);
        previous
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let (member, score) = self.scores.remove(member)?;
        let item = ScoredMember { score, member };
        let (left, rest) = split(self.order.take(), &|x| *x < item);
        let (_removed, right) = split(rest, &|x| *x <= item);
        self.order = merge(left, right);
        Some(score)
    }

    /// One ZSCAN step over the member table: visits the bucket `cursor` names, returns the next
    /// cursor (0 when done).
    pub fn scan(&self, cursor: u64, mut visit: impl FnMut(&Bytes, f64)) -> u64 {
        self.scores
            .scan(cursor, |(member, score)| visit(member, *score))
    }

    /// The member table's bucket array length (for MEMORY USAGE).
    pub fn table_buckets(&self) -> usize {
        self.scores.buckets()
    }

    /// Members in order, lowest score first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> {
        self.by_index(0..self.len())
    }

    /// Members at the 0-based positions `range` of the order (each found in O(log n)).
    pub fn by_index(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> {
        range.filter_map(move |i| nth(&self.order, i).map(|m| (&m.member, m.score)))
    }

    /// The 0-based position of `member`, lowest score first.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        let probe = ScoredMember {
            score,
            member: Bytes::copy_from_slice(member),
        };
        Some(count_while(&self.order, |x| *x < probe))
    }

    /// Members whose score is in `range`, ascending (or descending with `rev`).
    pub fn score_range<'a>(
        &'a self,
        range: ScoreRange,
        rev: bool,
    ) -> Box<dyn Iterator<Item = (&'a Bytes, f64)> + 'a> {
        if range.is_empty() || range.min.is_nan() || range.max.is_nan() {
            return Box::new(std::iter::empty());
        }
        let start = count_while(&self.order, |x| !range.above_min(x.score));
        let end = count_while(&self.order, |x| range.below_max(x.score));
        if start >= end {
            return Box::new(std::iter::empty());
        }
        if rev {
            Box::new(self.by_index(start..end).rev())
        } else {
            Box::new(self.by_index(start..end))
        }
    }

    /// Members in `range` as Redis walks them: from the first member at or above `min` (or,
    /// reversed, the last at or below `max`) while the other bound holds, after Redis's
    /// zzlIsInLexRange check (the last member must reach `min`, the first must not pass `max`).
    /// ZRANGEBYLEX means all scores to be equal; then members are in lex order and the start is
    /// found by bisection. When they are not, Redis's answer is still fixed for a listpack (it
    /// scans from the head, or the tail), so the start is found by the same scan.
    pub fn lex_range<'a>(
        &'a self,
        range: &'a LexRange,
        rev: bool,
    ) -> Box<dyn Iterator<Item = (&'a Bytes, f64)> + 'a> {
        let (Some((first, first_score)), Some((last, last_score))) =
            (self.iter().next(), self.iter().next_back())
        else {
            return Box::new(std::iter::empty());
        };
        if range.is_empty() || !range.above_min(last) || !range.below_max(first) {
            return Box::new(std::iter::empty());
        }
        let lex_ordered = first_score == last_score;
        if rev {
            let end = if lex_ordered {
                count_while(&self.order, |x| range.below_max(&x.member))
            } else {
                self.len()
                    - self
                        .iter()
                        .rev()
                        .take_while(|(m, _)| !range.below_max(m))
                        .count()
            };
            Box::new(
                self.by_index(0..end)
                    .rev()
                    .take_while(move |(m, _)| range.above_min(m)),
            )
        } else {
            let start = if lex_ordered {
                count_while(&self.order, |x| !range.above_min(&x.member))
            } else {
                self.iter().take_while(|(m, _)| !range.above_min(m)).count()
            };
            Box::new(
                self.by_index(start..self.len())
                    .take_while(move |(m, _)| range.below_max(m)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn set(items: &[(&str, f64)]) -> SortedSet {
        let mut z = SortedSet::default();
        for (m, s) in items {
            z.insert(Bytes::copy_from_slice(m.as_bytes()), *s);
        }
        z
    }

    #[test]
    fn order_rank_and_ranges() {
        let z = set(&[("c", 2.0), ("a", 1.0), ("b", 1.0), ("d", -0.0)]);
        let names: Vec<_> = z.iter().map(|(m, _)| m.clone()).collect();
        assert_eq!(names, vec!["d", "a", "b", "c"]);
        assert_eq!(z.rank(b"b"), Some(2));
        assert_eq!(z.rank(b"x"), None);
        let r = ScoreRange {
            min: 1.0,
            min_exclusive: true,
            max: f64::INFINITY,
            max_exclusive: false,
        };
        let got: Vec<_> = z.score_range(r, false).map(|(m, _)| m.clone()).collect();
        assert_eq!(got, vec!["c"]);
        let lex = LexRange {
            min: LexBound::NegInf,
            max: LexBound::NegInf,
        };
        assert!(lex.is_empty());
    }

    #[test]
    fn treap_agrees_with_a_sorted_vec() {
        use rand::Rng;
        let mut rng = rand::rng();
        let mut z = SortedSet::default();
        let mut model: HashMap<Bytes, f64> = HashMap::new();
        for _ in 0..5000 {
            let member = Bytes::from(format!("m{}", rng.random_range(0..300)));
            if rng.random_bool(0.3) {
                assert_eq!(z.remove(&member), model.remove(&member));
            } else {
                let score = f64::from(rng.random_range(-50..50)) / 4.0;
                assert_eq!(z.insert(member.clone(), score), model.insert(member, score));
            }
        }
        let mut want: Vec<(Bytes, f64)> = model.into_iter().collect();
        want.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let got: Vec<(Bytes, f64)> = z.iter().map(|(m, s)| (m.clone(), s)).collect();
        assert_eq!(got, want);
        for (i, (m, _)) in want.iter().enumerate() {
            assert_eq!(z.rank(m), Some(i));
        }
        assert_eq!(size(&z.order), z.len());
    }
}
