// SPDX-License-Identifier: MIT OR Apache-2.0

//! A UDP impairment proxy for loopback tests (the kernel here has no
//! `netem`): every datagram between the clients and the relay is dropped
//! with a seeded probability, delayed by a base delay plus jitter (which
//! reorders packets), and sometimes held back further. `cut` drops
//! everything, both ways, until it is lifted. `set_rate` caps what goes
//! from the relay to the clients: a bottleneck link with a 200 ms queue,
//! which drops what does not fit in it.

use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    /// Probability of dropping a datagram.
    pub loss: f64,
    pub delay: Duration,
    /// Uniform in [-jitter, +jitter] around `delay`.
    pub jitter: Duration,
    /// Probability of holding a datagram back an extra 5-20 ms.
    pub reorder: f64,
    pub seed: u64,
}

/// A small xorshift generator: reproducible runs from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Scheduled {
    due: Instant,
    seq: u64,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    payload: Vec<u8>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Earliest first out of a max-heap.
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// How long the capped link's queue may get before it drops datagrams.
const QUEUE_LIMIT: Duration = Duration::from_millis(200);

/// The capped link towards the clients: when it is next free.
struct Bottleneck {
    rate_bps: u64,
    free_at: Instant,
}

struct Shared {
    impairment: Impairment,
    bottleneck: Mutex<Bottleneck>,
    rng: Mutex<Rng>,
    queue: Mutex<BinaryHeap<Scheduled>>,
    wake: Condvar,
    cut: AtomicBool,
    stop: AtomicBool,
    seq: AtomicU64,
    pub dropped: AtomicU64,
    pub passed: AtomicU64,
}

impl Shared {
    /// When a datagram of `len` bytes leaves the capped link, if it fits in
    /// its queue.
    fn through_bottleneck(&self, len: usize) -> Option<Instant> {
        let mut link = self.bottleneck.lock().unwrap();
        let now = Instant::now();
        if link.rate_bps == 0 {
            return Some(now);
        }
        let start = link.free_at.max(now);
        if start - now > QUEUE_LIMIT {
            return None;
        }
        link.free_at = start + Duration::from_secs_f64(len as f64 * 8.0 / link.rate_bps as f64);
        Some(link.free_at)
    }

    fn schedule(&self, socket: &Arc<UdpSocket>, to: SocketAddr, payload: &[u8], down: bool) {
        if self.cut.load(Ordering::SeqCst) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sent = if down {
            self.through_bottleneck(payload.len())
        } else {
            Some(Instant::now())
        };
        let Some(sent) = sent else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (lost, jitter, held) = {
            let mut rng = self.rng.lock().unwrap();
            (rng.next(), rng.next(), rng.next())
        };
        let imp = &self.impairment;
        if lost < imp.loss {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let jitter_us = imp.jitter.as_micros() as f64 * (2.0 * jitter - 1.0);
        let mut delay_us = imp.delay.as_micros() as f64 + jitter_us;
        if held < imp.reorder {
            delay_us += 5_000.0 + 15_000.0 * held / imp.reorder.max(f64::EPSILON);
        }
        let due = sent + Duration::from_micros(delay_us.max(0.0) as u64);
        self.passed.fetch_add(1, Ordering::Relaxed);
        self.queue.lock().unwrap().push(Scheduled {
            due,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            socket: socket.clone(),
            to,
            payload: payload.to_vec(),
        });
        self.wake.notify_one();
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub fn start(upstream: SocketAddr, impairment: Impairment) -> Proxy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        front
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let shared = Arc::new(Shared {
            impairment,
            bottleneck: Mutex::new(Bottleneck {
                rate_bps: 0,
                free_at: Instant::now(),
            }),
            rng: Mutex::new(Rng(impairment.seed.max(1))),
            queue: Mutex::default(),
            wake: Condvar::new(),
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            passed: AtomicU64::new(0),
        });

        // Sender: delivers each datagram when it is due.
        let s = shared.clone();
        std::thread::spawn(move || {
            let mut queue = s.queue.lock().unwrap();
            while !s.stop.load(Ordering::SeqCst) {
                let now = Instant::now();
                match queue.peek() {
                    Some(next) if next.due <= now => {
                        let item = queue.pop().unwrap();
                        drop(queue);
                        let _ = item.socket.send_to(&item.payload, item.to);
                        queue = s.queue.lock().unwrap();
                    }
                    Some(next) => {
                        let wait = next.due - now;
                        queue = s.wake.wait_timeout(queue, wait).unwrap().0;
                    }
                    None => {
                        queue = s
                            .wake
                            .wait_timeout(queue, Duration::from_millis(100))
                            .unwrap()
                            .0;
                    }
                }
            }
        });

        // Receiver: one upstream socket per client, so the relay sees each
        // client as its own peer; replies go back through the front socket.
        let s = shared.clone();
        std::thread::spawn(move || {
            let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65536];
            while !s.stop.load(Ordering::SeqCst) {
                let Ok((n, from)) = front.recv_from(&mut buf) else {
                    continue;
                };
                let up = clients.entry(from).or_insert_with(|| {
                    let up = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
                    up.set_read_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                    let (reader, front, s) = (up.clone(), front.clone(), s.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while !s.stop.load(Ordering::SeqCst) {
                            if let Ok((n, _)) = reader.recv_from(&mut buf) {
                                s.schedule(&front, from, &buf[..n], true);
                            }
                        }
                    });
                    up
                });
                s.schedule(&up.clone(), upstream, &buf[..n], false);
            }
        });
        Proxy { addr, shared }
    }

    /// Drops everything both ways while on.
    pub fn cut(&self, on: bool) {
        self.shared.cut.store(on, Ordering::SeqCst);
    }

    /// Caps the link from the relay to the clients at `bps` bits per
    /// second; 0 lifts the cap.
    pub fn set_rate(&self, bps: u64) {
        self.shared.bottleneck.lock().unwrap().rate_bps = bps;
    }

    /// Datagrams dropped and passed so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.dropped.load(Ordering::Relaxed),
            self.shared.passed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
    }
}
