//! One builder per keyed command: the request and how its answer reads. The blocking and async
//! clients run the same `Op`s, so a command's meaning is written once.

use crate::proto::{Item, Request, SetMode};

use super::core::Op;
use super::types::{Expiry, StoreOptions};

pub(crate) fn get(key: &[u8]) -> Op<Option<Item>> {
    Op::new(Request::Get { key: key.to_vec() }, |c, r| c.item(r))
}

pub(crate) fn store(key: &[u8], value: &[u8], mode: SetMode, opts: StoreOptions) -> Op<u64> {
    Op::new(
        Request::Set {
            key: key.to_vec(),
            value: value.to_vec(),
            mode,
            flags: opts.flags,
            expire_at: opts.expiry.to_expire_at(),
        },
        move |c, r| c.stored(mode, r),
    )
}

pub(crate) fn delete(key: &[u8], cas: Option<u64>) -> Op<()> {
    Op::new(
        Request::Delete {
            key: key.to_vec(),
            cas,
        },
        |c, r| c.deleted(r),
    )
}

pub(crate) fn incr(key: &[u8], delta: u64, initial: Option<u64>, expiry: Expiry) -> Op<u64> {
    Op::new(
        Request::Incr {
            key: key.to_vec(),
            delta,
            initial,
            expire_at: expiry.to_expire_at(),
        },
        |c, r| c.number(r),
    )
}

pub(crate) fn decr(key: &[u8], delta: u64, initial: Option<u64>, expiry: Expiry) -> Op<u64> {
    Op::new(
        Request::Decr {
            key: key.to_vec(),
            delta,
            initial,
            expire_at: expiry.to_expire_at(),
        },
        |c, r| c.number(r),
    )
}

pub(crate) fn touch(key: &[u8], expiry: Expiry) -> Op<()> {
    Op::new(
        Request::Touch {
            key: key.to_vec(),
            expire_at: expiry.to_expire_at(),
        },
        |c, r| c.touched(r),
    )
}

pub(crate) fn get_and_touch(key: &[u8], expiry: Expiry) -> Op<Option<Item>> {
    Op::new(
        Request::GetAndTouch {
            key: key.to_vec(),
            expire_at: expiry.to_expire_at(),
        },
        |c, r| c.item(r),
    )
}

pub(crate) fn set_subkeys(key: &[u8], subkeys: &[Vec<u8>]) -> Op<()> {
    Op::new(
        Request::SetSubkeys {
            key: key.to_vec(),
            subkeys: subkeys.to_vec(),
        },
        |c, r| c.subkeys_stored(r),
    )
}

pub(crate) fn add_subkey(key: &[u8], subkey: &[u8]) -> Op<()> {
    Op::new(
        Request::AddSubkey {
            key: key.to_vec(),
            subkey: subkey.to_vec(),
        },
        |c, r| c.subkeys_stored(r),
    )
}

pub(crate) fn remove_subkey(key: &[u8], subkey: &[u8]) -> Op<()> {
    Op::new(
        Request::RemoveSubkey {
            key: key.to_vec(),
            subkey: subkey.to_vec(),
        },
        |c, r| c.deleted(r),
    )
}

pub(crate) fn list_subkeys(key: &[u8]) -> Op<Vec<Vec<u8>>> {
    Op::new(Request::ListSubkeys { key: key.to_vec() }, |c, r| {
        c.subkeys(r)
    })
}

pub(crate) fn clear_subkeys(key: &[u8]) -> Op<()> {
    Op::new(Request::ClearSubkeys { key: key.to_vec() }, |c, r| {
        c.subkeys_stored(r)
    })
}

pub(crate) fn delete_with_children(key: &[u8]) -> Op<Vec<Vec<u8>>> {
    Op::new(Request::DeleteWithChildren { key: key.to_vec() }, |c, r| {
        c.children(r)
    })
}
