//! Delivery reports of the sink's producer: counts what one write still
//! waits for, collects failures by record index, and classifies errors as
//! permanent (the record can never be accepted) or transient.
//!
//! Each message carries `generation << 32 | index` as its opaque, so
//! reports of an abandoned write can never be counted against the next one.
//! The per-message path is two atomic operations; the lock is taken only
//! for failures. Touches only memory; librdkafka calls [`ProducerCx`] from
//! the producer's polling thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use tokio::sync::Notify;

use crate::client::ClientCx;

/// What one write waits for.
#[derive(Default)]
pub struct Inflight {
    /// `generation << 32 | pending`, so a report is counted against its
    /// own write or not at all.
    state: AtomicU64,
    delivered: AtomicU64,
    notify: Notify,
    failures: Mutex<Vec<(usize, KafkaError)>>,
}

impl Inflight {
    /// Starts a write: forgets the previous one; returns its generation.
    pub fn begin(&self) -> u32 {
        let g = ((self.state.load(Ordering::Acquire) >> 32) as u32).wrapping_add(1);
        let mut failures = self.failures.lock();
        failures.clear();
        self.state.store((g as u64) << 32, Ordering::Release);
        drop(failures);
        g
    }

    /// The opaque of record `index` of write `generation`.
    pub fn opaque(generation: u32, index: usize) -> usize {
        ((generation as usize) << 32) | (index & 0xFFFF_FFFF)
    }

    /// One more message handed to the producer.
    pub fn sent(&self) {
        self.state.fetch_add(1, Ordering::AcqRel);
    }

    /// A message counted by [`sent`](Self::sent) that the producer refused.
    pub fn unsent(&self) {
        self.state.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn pending(&self) -> usize {
        (self.state.load(Ordering::Acquire) & 0xFFFF_FFFF) as usize
    }

    /// Messages delivered since the sink started.
    pub fn delivered_total(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Resolves when a report arrived that might have emptied the write.
    pub async fn wait_progress(&self) {
        let notified = self.notify.notified();
        if self.pending() == 0 {
            return;
        }
        notified.await;
    }

    /// The failures of the current write, lowest index first.
    pub fn take_failures(&self) -> Vec<(usize, KafkaError)> {
        let mut f = std::mem::take(&mut *self.failures.lock());
        f.sort_by_key(|(i, _)| *i);
        f
    }

    fn report(&self, opaque: usize, error: Option<KafkaError>) {
        let generation = (opaque >> 32) as u64;
        // A failure is recorded before the count drops, so the writer sees
        // it once nothing is pending.
        if let Some(e) = error {
            let mut failures = self.failures.lock();
            if self.state.load(Ordering::Acquire) >> 32 != generation {
                return;
            }
            failures.push((opaque & 0xFFFF_FFFF, e));
        } else {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur >> 32 != generation || cur & 0xFFFF_FFFF == 0 {
                return;
            }
            match self.state.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur & 0xFFFF_FFFF == 1 {
            self.notify.notify_one();
        }
    }
}

/// The producer's client context: logging plus delivery reports.
pub struct ProducerCx {
    pub client: ClientCx,
    pub inflight: Arc<Inflight>,
}

impl ClientContext for ProducerCx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.client.log(level, fac, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason)
    }
}

impl ProducerContext for ProducerCx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let error = match result {
            Ok(_) => None,
            Err((e, _)) => Some(e.clone()),
        };
        self.inflight.report(opaque, error);
    }
}

/// How the sink treats a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The broker will never accept this record: `on_error` applies.
    Permanent,
    /// Try the write again.
    Transient,
    /// The producer instance is unusable (idempotence state lost): build a
    /// new one, then try again.
    Fatal,
}

pub fn classify(e: &KafkaError) -> Class {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::UnknownPartition
            | C::InvalidTopic
            | C::TopicAuthorizationFailed
            | C::PolicyViolation
            | C::InvalidRecord,
        ) => Class::Permanent,
        Some(C::Fatal) => Class::Fatal,
        _ => Class::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_reports_are_ignored_and_the_last_one_wakes() {
        let f = Inflight::default();
        let g1 = f.begin();
        f.sent();
        let stale = Inflight::opaque(g1, 0);
        let g2 = f.begin();
        f.sent();
        f.sent();
        f.report(stale, None);
        assert_eq!(f.pending(), 2);
        f.report(Inflight::opaque(g2, 1), Some(KafkaError::Canceled));
        f.report(Inflight::opaque(g2, 0), None);
        f.wait_progress().await;
        assert_eq!(f.pending(), 0);
        let failures = f.take_failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, 1);
        assert_eq!(
            classify(&KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge
            )),
            Class::Permanent
        );
        assert_eq!(
            classify(&KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut
            )),
            Class::Transient
        );
    }
}
