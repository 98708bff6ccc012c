//! The running top `n` rooms of one pass over many: `/stats`' `topRooms`, on one node or over
//! the cluster.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::RoomMembers;
use crate::ids::RoomId;

/// The running top `n` rooms of a pass: a min-heap whose root is the weakest room kept.
pub(super) struct TopRooms {
    n: usize,
    /// Ordered by (members, reversed name): the greatest is the best room.
    heap: BinaryHeap<Reverse<(usize, Reverse<RoomId>)>>,
}

impl TopRooms {
    pub(super) fn new(n: usize) -> Self {
        Self {
            n,
            heap: BinaryHeap::with_capacity(n + 1),
        }
    }

    /// Considers `room` with `members`; clones it only if it enters the top `n`.
    pub(super) fn offer(&mut self, room: &RoomId, members: usize) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() == self.n {
            let Some(Reverse((weakest, Reverse(name)))) = self.heap.peek() else {
                return;
            };
            if members < *weakest || (members == *weakest && room >= name) {
                return;
            }
            self.heap.pop();
        }
        self.heap.push(Reverse((members, Reverse(room.clone()))));
    }

    /// The rooms kept, best first.
    pub(super) fn into_sorted(self) -> Vec<RoomMembers> {
        // Ascending order of `Reverse(key)` is descending order of the key: best first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse((members, Reverse(room)))| RoomMembers { room, members })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(n: usize, rooms: &[(&str, usize)]) -> Vec<(String, usize)> {
        let mut top = TopRooms::new(n);
        for (room, members) in rooms {
            top.offer(&RoomId::from_trusted(*room), *members);
        }
        top.into_sorted()
            .into_iter()
            .map(|r| (r.room.as_str().to_owned(), r.members))
            .collect()
    }

    #[test]
    fn keeps_the_largest_rooms_most_first_and_ties_by_name() {
        let rooms = [("d", 1), ("b", 5), ("a", 2), ("c", 5), ("e", 9), ("f", 2)];
        assert_eq!(
            top(4, &rooms),
            vec![
                ("e".into(), 9),
                ("b".into(), 5),
                ("c".into(), 5),
                ("a".into(), 2)
            ]
        );
        assert_eq!(top(10, &rooms).len(), 6);
        assert_eq!(top(0, &rooms), vec![]);
        assert_eq!(top(3, &[]), vec![]);
    }
}
