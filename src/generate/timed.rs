//! A heap item ordered by time, then by the order items were made: simulations pop the earliest
//! from a `BinaryHeap<Reverse<Timed<T>>>`, ties in a deterministic order.

/// `item`, due at `time`; `seq` breaks ties.
pub struct Timed<T> {
    pub time: i64,
    pub seq: u64,
    pub item: T,
}

impl<T> PartialEq for Timed<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl<T> Eq for Timed<T> {}
impl<T> PartialOrd for Timed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Timed<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}
