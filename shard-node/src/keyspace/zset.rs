//! The sorted set: members with scores, ordered by (score, member) as Redis orders them.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

/// Members by name (for ZSCORE) and in order (for ranges and ranks).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SortedSet {
    scores: HashMap<Bytes, f64>,
    order: BTreeSet<ScoredMember>,
}

/// An entry of the order: by score, then by member bytes. Scores are never NaN.
#[derive(Debug, Clone, PartialEq)]
struct ScoredMember {
    score: f64,
    member: Bytes,
}

impl Eq for ScoredMember {}

impl PartialOrd for ScoredMember {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ScoredMember {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| self.member.cmp(&other.member))
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
        self.scores.get(member).copied()
    }

    /// Sets `member`'s score; returns the previous one.
    pub fn insert(&mut self, member: Bytes, score: f64) -> Option<f64> {
        let previous = self.scores.insert(member.clone(), score);
        if let Some(old) = previous {
            self.order.remove(&ScoredMember {
                score: old,
                member: member.clone(),
            });
        }
        self.order.insert(ScoredMember { score, member });
        previous
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let (member, score) = self.scores.remove_entry(member)?;
        self.order.remove(&ScoredMember { score, member });
        Some(score)
    }

    /// Members in order, lowest score first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> {
        self.order.iter().map(|m| (&m.member, m.score))
    }
}
