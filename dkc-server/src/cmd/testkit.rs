//! Test fixture: an executor over a memory-mode store with a manual clock driving both
//! versions and expiry.

use std::sync::Arc;

use dkc_client::proto::{ErrorCode, Item, Request, Response, SetMode, WireRecord};
use k2hash::{Cursor, K2Hash, OpenOptions};

use crate::executor::{Executed, Executor};
use crate::hlc::{Hlc, ManualClock};
use crate::limits::Limits;
use crate::record::to_wire;

/// 2026-01-01T00:00:00Z, a round time well after the version epoch.
pub const T0_MS: u64 = 1_767_225_600_000;

pub struct Kit {
    pub exec: Executor,
    pub clock: Arc<ManualClock>,
}

impl Kit {
    pub fn new() -> Kit {
        Kit::new_node(1)
    }

    pub fn new_node(node: u8) -> Kit {
        Kit::build(node, Limits::default(), Arc::new(ManualClock::new(T0_MS)))
    }

    pub fn with_value_size_max(bytes: usize) -> Kit {
        Kit::build(
            1,
            Limits::default().with_value_size_max(bytes),
            Arc::new(ManualClock::new(T0_MS)),
        )
    }

    pub fn with_expire_default(secs: u64) -> Kit {
        let mut kit = Kit::new();
        kit.exec = kit.exec.with_expire_default(Some(secs));
        kit
    }

    pub fn build(node: u8, limits: Limits, clock: Arc<ManualClock>) -> Kit {
        let store = OpenOptions::memory()
            .clock(clock.clone())
            .open()
            .expect("memory store opens");
        let exec = Executor::new(Arc::new(store), node, clock.clone()).with_limits(limits);
        Kit { exec, clock }
    }

    pub fn exec(&self, req: Request) -> Executed {
        let done = self.exec.execute(&req);
        // Every answer must survive the wire.
        let bytes = dkc_client::proto::encode_response(&done.response).expect("encodes");
        assert_eq!(
            dkc_client::proto::decode_response(&bytes).expect("decodes"),
            done.response
        );
        done
    }

    pub fn run(&self, req: Request) -> Response {
        self.exec(req).response
    }

    pub fn expect_error(&self, req: Request, code: ErrorCode) {
        let ex = self.exec(req);
        match ex.response {
            Response::Error { code: got, message } => {
                assert_eq!(got, code, "{message}");
                assert!(!message.is_empty());
            }
            other => panic!("expected {code}, got {other:?}"),
        }
        assert!(
            ex.replicate.is_empty(),
            "a failed command replicates nothing"
        );
    }

    /// Plain set; returns the new version.
    pub fn set(&self, key: &[u8], value: &[u8]) -> u64 {
        match self.run(Request::Set {
            key: key.to_vec(),
            value: value.to_vec(),
            mode: SetMode::Set,
            flags: 0,
            expire_at: 0,
        }) {
            Response::Stored { version } => version,
            other => panic!("set failed: {other:?}"),
        }
    }

    pub fn item(&self, key: &[u8]) -> Option<Item> {
        match self.run(Request::Get { key: key.to_vec() }) {
            Response::Value(item) => Some(item),
            Response::NotFound => None,
            other => panic!("get failed: {other:?}"),
        }
    }

    pub fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.item(key).map(|i| i.value)
    }

    pub fn store(&self) -> &K2Hash {
        self.exec.store()
    }

    pub fn hlc(&self) -> &Hlc {
        self.exec.hlc()
    }

    pub fn limits(&self) -> &Limits {
        self.exec.limits()
    }

    pub fn now_secs(&self) -> u64 {
        self.store().now()
    }

    pub fn advance_secs(&self, secs: u64) {
        self.clock.advance_ms(secs * 1000);
    }

    /// Every stored record (tombstones included) sorted by key.
    pub fn dump_raw(&self) -> Vec<WireRecord> {
        let mut out = Vec::new();
        let mut pos = Cursor::start();
        loop {
            let (batch, next) = self.store().scan(&pos, 100).expect("scan");
            out.extend(batch.into_iter().map(|it| to_wire(it.record)));
            match next {
                Some(c) => pos = c,
                None => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}
