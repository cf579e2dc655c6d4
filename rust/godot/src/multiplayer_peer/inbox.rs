//! Received packets waiting for SceneMultiplayer, sans-IO.
//!
//! The head of the queue is what `get_packet_peer` / `get_packet_channel` /
//! `get_packet_mode` describe and what `get_packet` pops. Ordered datagrams
//! older than the newest one seen from the same peer on the same channel are
//! dropped here. The queue is bounded in bytes.

use std::collections::{HashMap, VecDeque};

use super::wire::{Mode, seq_newer};

/// One received packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The Godot peer id of the sender.
    pub from: i32,
    pub channel: u8,
    pub mode: Mode,
    pub packet: Vec<u8>,
}

/// Why a packet was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// An ordered datagram older than one already delivered on its channel.
    Stale,
    /// The queue holds its byte limit already.
    Full,
}

/// The queue of received packets.
#[derive(Debug)]
pub struct Inbox {
    queue: VecDeque<Incoming>,
    bytes: usize,
    max_bytes: usize,
    newest: HashMap<(i32, u8), u32>,
}

impl Inbox {
    /// An empty queue that holds at most `max_bytes` of packets.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            bytes: 0,
            max_bytes,
            newest: HashMap::new(),
        }
    }

    /// Queues a packet; `seq` is read for ordered datagrams only.
    pub fn push(&mut self, p: Incoming, seq: u32) -> Result<(), Refused> {
        if self.bytes.saturating_add(p.packet.len()) > self.max_bytes {
            return Err(Refused::Full);
        }
        if p.mode == Mode::UnreliableOrdered {
            let key = (p.from, p.channel);
            match self.newest.get(&key) {
                Some(n) if !seq_newer(seq, *n) => return Err(Refused::Stale),
                _ => {
                    self.newest.insert(key, seq);
                }
            }
        }
        self.bytes += p.packet.len();
        self.queue.push_back(p);
        Ok(())
    }

    /// The packet `get_packet` would return next.
    pub fn head(&self) -> Option<&Incoming> {
        self.queue.front()
    }

    /// Takes the head.
    pub fn pop(&mut self) -> Option<Incoming> {
        let p = self.queue.pop_front()?;
        self.bytes -= p.packet.len();
        Some(p)
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Forgets a peer: its waiting packets and its ordering state.
    pub fn forget(&mut self, peer: i32) {
        self.queue.retain(|p| p.from != peer);
        self.bytes = self.queue.iter().map(|p| p.packet.len()).sum();
        self.newest.retain(|(from, _), _| *from != peer);
    }

    /// Empties the queue and the ordering state.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
        self.newest.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(from: i32, channel: u8, mode: Mode, b: u8) -> Incoming {
        Incoming {
            from,
            channel,
            mode,
            packet: vec![b],
        }
    }

    #[test]
    fn ordered_datagrams_drop_older_ones_per_peer_and_channel() {
        let mut q = Inbox::new(1 << 20);
        let o = Mode::UnreliableOrdered;
        assert_eq!(q.push(p(2, 0, o, 1), 5), Ok(()));
        assert_eq!(q.push(p(2, 0, o, 2), 4), Err(Refused::Stale));
        assert_eq!(q.push(p(2, 0, o, 3), 5), Err(Refused::Stale));
        // Another channel and another peer keep their own order.
        assert_eq!(q.push(p(2, 1, o, 4), 1), Ok(()));
        assert_eq!(q.push(p(3, 0, o, 5), 1), Ok(()));
        assert_eq!(q.push(p(2, 0, o, 6), 6), Ok(()));
        // Unordered datagrams and reliable packets are never dropped as stale.
        assert_eq!(q.push(p(2, 0, Mode::Unreliable, 7), 0), Ok(()));
        assert_eq!(q.push(p(2, 0, Mode::Reliable, 8), 0), Ok(()));
        let order: Vec<u8> = std::iter::from_fn(|| q.pop())
            .map(|p| p.packet[0])
            .collect();
        assert_eq!(order, vec![1, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn the_head_is_what_pop_returns_and_the_byte_limit_holds() {
        let mut q = Inbox::new(3);
        q.push(p(2, 0, Mode::Reliable, 1), 0).unwrap();
        q.push(p(3, 2, Mode::Unreliable, 2), 0).unwrap();
        q.push(p(4, 0, Mode::Reliable, 3), 0).unwrap();
        assert_eq!(q.push(p(4, 0, Mode::Reliable, 4), 0), Err(Refused::Full));
        assert_eq!(q.head().map(|h| h.from), Some(2));
        assert_eq!(q.pop().map(|h| h.from), Some(2));
        assert_eq!(q.head().map(|h| (h.from, h.channel)), Some((3, 2)));
        q.forget(3);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop().map(|h| h.from), Some(4));
        assert_eq!(q.pop(), None);
        q.push(p(4, 0, Mode::Reliable, 4), 0).unwrap();
    }
}
