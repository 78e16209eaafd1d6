//! A FIFO ring that grows and shrinks in fixed-size chunks.
//!
//! Why not `VecDeque`: a `VecDeque` doubles by allocating twice its size and
//! copying every element. The reservation shards are filled round-robin, so
//! all 64 of them cross a power of two within a few requests of each other:
//! with a few hundred thousand live holds that is tens of megabytes copied
//! and freshly faulted in at once, a stall of tens of milliseconds on the
//! request path (measured before commit 0365b1a: an open-loop p99 of
//! 37-115 ms at 40 % of the maximum rate; 9-11 ms with chunks). Here a push allocates at
//! most one chunk of `CHUNK` elements and moves nothing; popping the last
//! element of the front chunk keeps that chunk as the one spare, which the
//! next push that needs a chunk takes back: a ring that holds its size (a
//! steady flow of holds in, expiries out) allocates nothing and touches no
//! fresh memory.

use std::collections::VecDeque;

/// Elements per chunk: small enough that allocating one is cheap (about
/// 25 KiB of reservations; the 64 shards still fill theirs in step, so this
/// is also the size of that burst: 1.6 MiB), large enough that the chunk
/// index stays short. 1,024 measured no better (open-loop p99 14.9 and 4.9 ms against 9.0
/// and 10.8 ms with 256, commit 0365b1a).
const CHUNK: usize = 256;

pub(crate) struct ChunkedRing<T> {
    /// Every chunk but the first is full except possibly the last: the
    /// front is consumed from the first chunk, pushes go to the last.
    chunks: VecDeque<VecDeque<T>>,
    len: usize,
    /// An emptied chunk kept for the next one needed (at most one, so a ring
    /// that shrinks still gives its memory back).
    spare: Option<VecDeque<T>>,
}

impl<T> Default for ChunkedRing<T> {
    fn default() -> Self {
        ChunkedRing {
            chunks: VecDeque::new(),
            len: 0,
            spare: None,
        }
    }
}

impl<T> ChunkedRing<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push_back(&mut self, value: T) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => last.push_back(value),
            _ => {
                let mut chunk = self
                    .spare
                    .take()
                    .unwrap_or_else(|| VecDeque::with_capacity(CHUNK));
                debug_assert!(chunk.is_empty() && chunk.capacity() >= CHUNK);
                chunk.push_back(value);
                self.chunks.push_back(chunk);
            }
        }
        self.len += 1;
    }

    pub fn front(&self) -> Option<&T> {
        self.chunks.front().and_then(VecDeque::front)
    }

    pub fn back(&self) -> Option<&T> {
        self.chunks.back().and_then(VecDeque::back)
    }

    /// Keeps only the elements `keep` accepts, in order. Moves every kept
    /// element once; the emptied chunks are reused as it goes.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let chunks = std::mem::take(&mut self.chunks);
        self.len = 0;
        for mut chunk in chunks {
            for value in chunk.drain(..) {
                if keep(&value) {
                    self.push_back(value);
                }
            }
            if self.spare.is_none() {
                self.spare = Some(chunk);
            }
        }
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let first = self.chunks.front_mut()?;
        let value = first.pop_front()?;
        if first.is_empty() {
            let emptied = self.chunks.pop_front();
            if self.spare.is_none() {
                self.spare = emptied;
            }
        }
        self.len -= 1;
        Some(value)
    }

    /// Chunk and position of the `index`-th element from the front.
    fn locate(&self, index: usize) -> Option<(usize, usize)> {
        if index >= self.len {
            return None;
        }
        let first = self.chunks.front()?.len();
        if index < first {
            return Some((0, index));
        }
        let rest = index - first;
        Some((1 + rest / CHUNK, rest % CHUNK))
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        let (chunk, at) = self.locate(index)?;
        self.chunks.get(chunk)?.get(at)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        let (chunk, at) = self.locate(index)?;
        self.chunks.get_mut(chunk)?.get_mut(at)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_deque_across_chunk_boundaries() {
        let mut ring = ChunkedRing::default();
        let mut model = VecDeque::new();
        let mut next = 0_u64;
        // Pushes and pops in uneven runs so the front lands at every
        // offset within a chunk and chunks are created and freed.
        for round in 0..40_usize {
            for _ in 0..(round * 97) % 2_500 {
                ring.push_back(next);
                model.push_back(next);
                next += 1;
            }
            for _ in 0..(round * 61) % 1_900 {
                assert_eq!(ring.pop_front(), model.pop_front());
            }
            assert_eq!(ring.len(), model.len());
            assert_eq!(ring.is_empty(), model.is_empty());
            assert_eq!(ring.front(), model.front());
            for index in [
                0,
                1,
                CHUNK - 1,
                CHUNK,
                CHUNK + 1,
                model.len() / 2,
                model.len(),
            ] {
                assert_eq!(ring.get(index), model.get(index), "index {index}");
            }
            if let Some(last) = model.len().checked_sub(1) {
                *ring.get_mut(last).expect("last") += 1_000_000;
                model[last] += 1_000_000;
            }
            assert!(ring.iter().eq(model.iter()));
            assert_eq!(ring.back(), model.back());
            if round % 7 == 3 {
                ring.retain(|v| v % 3 != 0);
                model.retain(|v| v % 3 != 0);
                assert!(ring.iter().eq(model.iter()), "retain keeps order");
                assert_eq!(ring.len(), model.len());
            }
            assert!(ring.chunks.len() <= model.len().div_ceil(CHUNK) + 1);
        }
        while let Some(value) = model.pop_front() {
            assert_eq!(ring.pop_front(), Some(value));
        }
        assert_eq!(ring.pop_front(), None);
        assert!(ring.chunks.is_empty(), "an empty ring holds no chunk");
    }

    #[test]
    fn a_steady_flow_reuses_the_emptied_chunk() {
        let mut ring = ChunkedRing::default();
        for value in 0..2 * CHUNK {
            ring.push_back(value);
        }
        assert!(ring.spare.is_none());
        for _ in 0..CHUNK {
            ring.pop_front();
        }
        let emptied = ring.spare.as_ref().map(|c| (c.capacity(), c.is_empty()));
        assert_eq!(emptied, Some((CHUNK, true)), "the emptied chunk is kept");
        // The next chunk needed is the spare one, not a new allocation.
        for value in 0..=CHUNK {
            ring.push_back(value);
        }
        assert!(ring.spare.is_none(), "taken back");
        assert_eq!(ring.len(), 2 * CHUNK + 1);
        assert_eq!(ring.front(), Some(&CHUNK));
    }
}
