//! `Touch`: a new expiry for a live item. The item gets a new version, because replicas only
//! take records newer than theirs (so a memcached CAS token read before a touch no longer
//! matches after it, unlike memcached).

use dkc_client::proto::Response;

use super::{rewrite, Change, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8], expire_at: u64) -> CmdResult {
    ctx.check_key("key", key)?;
    let c = ctx.counters;
    bump(&c.cmd_touch);
    let (answer, written) = ctx.modify(key, |live| {
        Ok(match live {
            None => {
                bump(&c.touch_misses);
                Change::Keep(Response::NotFound)
            }
            Some(old) => {
                bump(&c.touch_hits);
                let rec = rewrite(Some(old), old.value.clone(), old.flags, expire_at);
                Change::Write(rec, Response::Touched)
            }
        })
    })?;
    Ok(Executed::wrote(answer, written))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{Request, Response, SetMode};

    #[test]
    fn touch_extends_and_shortens_life() {
        let kit = Kit::new();
        assert_eq!(
            kit.run(Request::Touch {
                key: b"k".to_vec(),
                expire_at: 0
            }),
            Response::NotFound
        );
        let now = kit.now_secs();
        kit.run(Request::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            mode: SetMode::Set,
            flags: 3,
            expire_at: now + 2,
        });
        let ex = kit.exec(Request::Touch {
            key: b"k".to_vec(),
            expire_at: now + 100,
        });
        assert_eq!(ex.response, Response::Touched);
        assert_eq!(ex.replicate[0].expire_at, now + 100);
        kit.advance_secs(50);
        let item = kit
            .item(b"k")
            .expect("touched item outlives its first expiry");
        assert_eq!((item.value.as_slice(), item.flags), (&b"v"[..], 3));
        kit.run(Request::Touch {
            key: b"k".to_vec(),
            expire_at: kit.now_secs() + 1,
        });
        kit.advance_secs(1);
        assert_eq!(kit.value(b"k"), None);
        assert_eq!(
            kit.run(Request::Touch {
                key: b"k".to_vec(),
                expire_at: 0
            }),
            Response::NotFound
        );
    }

    #[test]
    fn touch_to_zero_means_never_expire() {
        let kit = Kit::new();
        let now = kit.now_secs();
        kit.run(Request::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            mode: SetMode::Set,
            flags: 0,
            expire_at: now + 1,
        });
        kit.run(Request::Touch {
            key: b"k".to_vec(),
            expire_at: 0,
        });
        kit.advance_secs(1_000_000);
        assert_eq!(kit.value(b"k"), Some(b"v".to_vec()));
    }
}
