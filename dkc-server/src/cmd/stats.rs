//! `Stats`: the engine's counters and this executor's operation counters, by stable name.

use std::collections::BTreeMap;

use dkc_client::proto::Response;

use super::{CmdResult, Ctx};
use crate::executor::Executed;

pub(crate) fn execute(ctx: &Ctx<'_>) -> CmdResult {
    let s = ctx.store.stats();
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: u64| {
        out.insert(k.to_string(), v);
    };
    put("curr_items", s.items);
    put("tombstones", s.tombstones);
    put("bytes", s.live_bytes);
    put("used_bytes", s.used_bytes);
    put("file_size", s.file_size);
    put("free_bytes", s.free_bytes);
    put("index_slots", s.index_slots);
    put("node_index", u64::from(ctx.hlc.node_index()));
    put("limit_maxbytes_item", ctx.limits.value_size_max as u64);
    put("hlc_skew_max_ms", ctx.hlc.skew_max_ms());
    put("hlc_skew_warnings", ctx.hlc.skew_warnings());
    put("time", ctx.store.now());
    ctx.counters.snapshot(&mut out);
    Ok(Executed::reply(Response::Stats(out)))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{Request, Response};

    #[test]
    fn stats_count_items_and_operations() {
        let kit = Kit::new();
        kit.set(b"a", b"1");
        kit.set(b"b", b"2");
        kit.run(Request::Get { key: b"a".to_vec() });
        kit.run(Request::Get {
            key: b"zz".to_vec(),
        });
        kit.run(Request::Delete {
            key: b"b".to_vec(),
            cas: None,
        });
        let Response::Stats(s) = kit.run(Request::Stats) else {
            panic!()
        };
        assert_eq!(s["curr_items"], 1);
        assert_eq!(s["tombstones"], 1);
        assert_eq!((s["cmd_get"], s["get_hits"], s["get_misses"]), (2, 1, 1));
        assert_eq!((s["cmd_set"], s["delete_hits"]), (2, 1));
        assert_eq!(s["node_index"], 1);
    }
}
