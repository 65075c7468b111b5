//! Cache affinity: which of its model's queue partitions ([`coder_nats::affinity`]) this worker
//! pulls from, and when.
//!
//! A worker pulls only when it has a free slot, as before; what changes is where it looks first.
//! - It owns the partitions for which it wins the rendezvous among the live workers of its model
//!   ([`peers`], fed by their heartbeats). Requests of one conversation or one file share a
//!   partition, so the owner holds their prefix in its cache.
//! - When the gateway rings the doorbell for a partition ([`signals`]), its owner fetches at once
//!   if it has room. If the owner is full (it beats at once when it fills up) or gone (no
//!   heartbeat within its TTL, or a draining one), the partition is, for now, the runner-up's:
//!   the rendezvous winner among the workers with room, the same one every time, which fetches
//!   at once. Any other worker with room takes a request that has waited `--steal-after` (the
//!   owner may be slow, stuck or dead before its heartbeats expire) ([`schedule`]). So no worker
//!   waits for a busy or dead owner while it has room itself.
//! - Every partition is swept now and then, so a lost doorbell or a redelivered request (the ack
//!   wait of a crashed worker's request ran out: JetStream rings no bell) is found too.
//!
//! Every partition is an ordinary durable work-queue consumer: a request stays in JetStream until
//! a worker pulls it, is acked as before, and returns after `ack_wait` if its worker dies.
//! Fetches never wait on the server (`no_wait`) and ask for at most the free slots, so a worker
//! never holds more than it can start.

pub mod peers;
pub mod schedule;
pub mod signals;

pub use peers::Peers;
pub use schedule::{Claim, Schedule};
pub use signals::Signals;
