//! Differential test: the same bytes go to the real memcached and to dkc-memcached (memory
//! backend); the replies must be identical, masking only CAS values and the version string.
//! Each case runs on a fresh connection after a `flush_all`, and ends with a meta miss whose
//! reply marks the end (cases that make the server hang up are read to EOF instead).
//! Every case was first run by hand against memcached 1.6.18.

mod memcached_support;

use std::net::SocketAddr;

use memcached_support::{exchange, start_dkc, start_memcached};

enum Seg {
    Lit(&'static [u8]),
    Rep(u8, usize),
}

fn lit(bytes: &'static [u8]) -> Seg {
    Seg::Lit(bytes)
}

fn rep(byte: u8, count: usize) -> Seg {
    Seg::Rep(byte, count)
}

fn cat(segs: &[Seg]) -> Vec<u8> {
    let mut out = Vec::new();
    for seg in segs {
        match seg {
            Seg::Lit(bytes) => out.extend_from_slice(bytes),
            Seg::Rep(byte, count) => out.extend(std::iter::repeat_n(*byte, *count)),
        }
    }
    out
}

/// Hides what legitimately differs: CAS numbers (`VALUE k f n CAS`, meta `c<n>`) and the
/// version text.
fn mask(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    let mut out = Vec::new();
    for line in text.split("\r\n") {
        let fields: Vec<&str> = line.split(' ').collect();
        let masked = if line.starts_with("VALUE ") && fields.len() == 5 {
            format!(
                "{} {} {} {} <CAS>",
                fields[0], fields[1], fields[2], fields[3]
            )
        } else if line.starts_with("VERSION ") {
            "VERSION <V>".to_string()
        } else if ["VA ", "HD", "EN", "NS", "EX", "NF"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            fields
                .iter()
                .map(|f| {
                    if f.len() > 1
                        && f.starts_with('c')
                        && f[1..].bytes().all(|b| b.is_ascii_digit())
                    {
                        "c<CAS>".to_string()
                    } else {
                        f.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            line.to_string()
        };
        out.push(masked);
    }
    out.join("\r\n")
}

/// Appended to every case; its reply (a meta miss echoing a unique opaque) marks the end.
const SENTINEL: &[u8] = b"mg dkc_sentinel_missing_key O20260101 k\r\n";
const SENTINEL_REPLY: &[u8] = b"EN O20260101 kdkc_sentinel_missing_key\r\n";

fn run(addr: SocketAddr, case: &[u8]) -> String {
    let flushed = exchange(addr, b"flush_all\r\n", Some(b"OK\r\n"));
    assert_eq!(flushed, b"OK\r\n", "flush_all before the case");
    // A case that does not end in a newline makes the server hang up: read to EOF.
    if case.ends_with(b"\n") {
        let mut request = case.to_vec();
        request.extend_from_slice(SENTINEL);
        mask(&exchange(addr, &request, Some(SENTINEL_REPLY)))
    } else {
        mask(&exchange(addr, case, None))
    }
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let shown: String = text.chars().take(160).collect();
    format!("{shown:?} ({} bytes)", bytes.len())
}

fn cases() -> Vec<Vec<u8>> {
    vec![
        cat(&[lit(b"get a\r\n")]),
        cat(&[lit(b"set a 5 0 3\r\nabc\r\nget a\r\ngets a\r\n")]),
        cat(&[lit(b"foo\r\n")]),
        cat(&[lit(b"\r\n")]),
        cat(&[lit(b"set a 0 0 3\r\nabcd\r\nget a\r\n")]),
        cat(&[lit(b"set a 0 0 3\r\nab\r\n")]),
        cat(&[lit(b"set a 0 0 3 noreply\r\nxyz\r\nget a\r\n")]),
        cat(&[lit(b"set a 0 0\r\nxyz\r\n")]),
        cat(&[lit(b"set a x 0 3\r\nxyz\r\n")]),
        cat(&[lit(b"set a 0 x 3\r\nxyz\r\n")]),
        cat(&[lit(b"set a 0 0 -1\r\nxyz\r\n")]),
        cat(&[lit(b"set a 0 -1 3\r\nxyz\r\nget a\r\n")]),
        cat(&[lit(b"set "), rep(b'k', 251), lit(b" 0 0 3\r\nxyz\r\n")]),
        cat(&[lit(b"get "), rep(b'k', 251), lit(b"\r\n")]),
        cat(&[lit(b"get "), rep(b'k', 250), lit(b"\r\n")]),
        cat(&[lit(b"set big 0 0 2000000\r\n"), rep(b'x', 2000000), lit(b"\r\nget a\r\n")]),
        cat(&[lit(b"incr a 1\r\n")]),
        cat(&[lit(b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr n 18446744073709551615\r\nincr n 2\r\n")]),
        cat(&[lit(b"incr n x\r\nincr n -1\r\nincr missing 1\r\n")]),
        cat(&[lit(b"cas a 0 0 1 999\r\nx\r\ncas zz 0 0 1 1\r\nx\r\n")]),
        cat(&[lit(b"delete a\r\ndelete a\r\ndelete a 0\r\ndelete a 5\r\ndelete a noreply\r\n")]),
        cat(&[lit(b"touch a 10\r\ntouch zz 10\r\ngat 100 a zz\r\ngats 100 a\r\n")]),
        cat(&[lit(b"version\r\nverbosity 1\r\nverbosity\r\nflush_all\r\nflush_all 0\r\nflush_all noreply\r\nflush_all x\r\n")]),
        cat(&[lit(b"quit\r\nget a\r\n")]),
        cat(&[lit(b"GET a\r\n")]),
        cat(&[lit(b"get\r\n")]),
        cat(&[lit(b"get a\n")]),
        cat(&[lit(b"set a 0 0 3\nabc\nget a\n")]),
        cat(&[lit(b"get a "), rep(b'k', 251), lit(b" a\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nx\r\ngat 100\r\ngats\r\ngat 10 a\r\ngat -1 a\r\nget a\r\n")]),
        cat(&[lit(b"stats foo\r\nstats detail\r\nquit x\r\nverbosity 1 noreply\r\n")]),
        cat(&[lit(b"verbosity 1 noreply\r\nverbosity 1 2 3\r\nverbosity x\r\n")]),
        cat(&[lit(b"set a 0 0 1048516\r\n"), rep(b'x', 1048516), lit(b"\r\nset a 0 0 1048517\r\n"), rep(b'x', 1048517), lit(b"\r\nset a 0 0 1048500\r\n"), rep(b'x', 1048500), lit(b"\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nx\r\nset a 0 0 2000000 noreply\r\n"), rep(b'x', 2000000), lit(b"\r\nget a\r\n")]),
        cat(&[lit(b"flush_all 0 noreply\r\nflush_all -1\r\nflush_all 10 x\r\nflush_all 1 2 3\r\n")]),
        cat(&[lit(b"touch a 10 noreply\r\ntouch a 10 x\r\nincr a 1 x\r\nset\r\nget  a\r\n  get a\r\nget a  \r\n")]),
        cat(&[lit(b"set a 0 0 1\r\n1\r\nincr a 1 noreply\r\nget a\r\ndelete a 0 noreply\r\nget a\r\n")]),
        cat(&[lit(b"add a 0 0 1 noreply\r\nx\r\nadd a 0 0 1 noreply\r\nx\r\ncas a 0 0 1 0 noreply\r\ny\r\nmn\r\n")]),
        cat(&[lit(b"set a 0 0 3\r\na\rb\r\nget a\r\n")]),
        cat(&[lit(b"set a\t0 0 1\r\nx\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nxx\r\n\r\nget a\r\n")]),
        cat(&[lit(b"set a 0 0 01\r\nx\r\nset a 00 0 1\r\nx\r\nset a +1 0 1\r\nx\r\nset a -1 0 1\r\nx\r\nset a 0 0 +1\r\nx\r\nget a\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\n1\r\nincr a +3\r\nincr a 03\r\nincr a  3\r\ndecr a 0\r\n")]),
        cat(&[lit(b"set a 0 0 20\r\n18446744073709551615\r\nincr a 1\r\nget a\r\nset a 0 0 21\r\n18446744073709551616\r\nincr a 1\r\nset a 0 0 2\r\n-1\r\nincr a 1\r\nset a 0 0 0\r\n\r\nincr a 1\r\n")]),
        cat(&[lit(b"set a 0 0 2\r\n99\r\nincr a 1\r\nget a\r\nset a 0 0 3\r\n100\r\ndecr a 91\r\nget a\r\nincr a 1\r\nget a\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nx\r\nincr a 1\r\nset a 0 0 3\r\n 12\r\nincr a 1\r\nset a 0 0 3\r\n12 \r\nincr a 1\r\nget a\r\n")]),
        cat(&[lit(b"touch a\r\ntouch a x\r\ngat a\r\ngat x a\r\ngat\r\n")]),
        cat(&[lit(b"append zz 0 0 1\r\nx\r\nprepend zz 0 0 1\r\nx\r\nset a 0 0 1\r\n9\r\nadd a 0 0 1\r\nx\r\nreplace zz 0 0 1\r\nx\r\nappend a 7 7 1\r\nX\r\nprepend a 8 8 1\r\nY\r\nget a\r\nreplace a 3 0 1\r\nr\r\nget a\r\n")]),
        cat(&[lit(b"cas a 0 0 1\r\nx\r\n")]),
        cat(&[lit(b"cas a 0 0 1 abc\r\nx\r\n")]),
        cat(&[lit(b"set b 4294967295 0 1\r\n1\r\nset c 4294967296 0 1\r\n1\r\nget b c\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\n1\r\nincr a 18446744073709551616\r\nincr a\r\ndecr a 1 noreply\r\nget a\r\n")]),
        cat(&[lit(b"get a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a \r\n")]),
        cat(&[lit(b"set a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a \r\n")]),
        cat(&[rep(b'y', 3000), lit(b"\r\n")]),
        cat(&[rep(b'x', 3000)]),
        cat(&[lit(b"set a 0 0 3 noreply\r\nabcd\r\n")]),
        cat(&[lit(b"set a 0 0 3 foo\r\nabc\r\nget a\r\n")]),
        cat(&[lit(b"set a 0 0 3 noreply extra\r\nabc\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nx\r\nset b 0 0 1\r\ny\r\nget a b c d e f g h i j k l m n o p q r s t u v w x y z a1 a2 a3 a4 a5 a6 b\r\n")]),
        cat(&[lit(b"mn\r\nmg a v\r\nmg missing v\r\nmg missing v q\r\nmn\r\n")]),
        cat(&[lit(b"ms mk 3\r\nabc\r\nmg mk v f t c k s\r\nmg mk\r\nmg mk k O123 q\r\nmg mk Oabc\r\n")]),
        cat(&[lit(b"ms mk 3 T100 F5\r\nxyz\r\nmg mk v f t s\r\nms mk 2 MA\r\nzz\r\nmg mk v\r\nms mk 1 MP\r\nQ\r\nmg mk v f t\r\n")]),
        cat(&[lit(b"ms mk2 2 ME\r\nab\r\nms mk2 2 ME\r\nab\r\nms mk3 2 MR\r\nab\r\nms mk2 2 MS I\r\ncd\r\nms mk2 2 C1\r\nzz\r\n")]),
        cat(&[lit(b"ms mk2 1\r\nx\r\nmd mk2\r\nmd mk2\r\nmd mk2 q\r\nmn\r\nms mk 1\r\nx\r\nmd mk q\r\nmn\r\n")]),
        cat(&[lit(b"ma cnt\r\nma cnt N0 J13\r\nma cnt v\r\nma cnt v MD D20\r\nma cnt v D5 t c\r\n")]),
        cat(&[lit(b"mg bWs= b v k\r\nms bWs= 2 b\r\nhi\r\nmg bWs= b v k\r\nmg mk v\r\nmg mk k b\r\n")]),
        cat(&[lit(b"mg "), rep(b'k', 251), lit(b" v\r\n")]),
        cat(&[lit(b"mg a zz\r\nmg a v v\r\nms a xx\r\nms a\r\nmx\r\nmg\r\n")]),
        cat(&[lit(b"ms big 2000000\r\n"), rep(b'x', 2000000), lit(b"\r\nmn\r\n")]),
        cat(&[lit(b"ms a 3\r\nabcd\r\nmn\r\n")]),
        cat(&[lit(b"mg newkey N30 v c t\r\nmg newkey v c t\r\nmg newkey v\r\nms newkey 1\r\nv\r\nmg newkey v\r\n")]),
        cat(&[lit(b"ms tk 1 T0\r\n1\r\nmg tk t v\r\nmg tk T30 t\r\nmg tk t\r\n")]),
        cat(&[lit(b"ma nx q\r\nma nx\r\nmn\r\nset x 0 0 1\r\n5\r\nma x q\r\nma x q v\r\nmn\r\nma x MI D2 v\r\nma x M- D100 v\r\nma x Mx\r\nma x Dz\r\n")]),
        cat(&[lit(b"ms q1 1 q\r\nx\r\nms q1 1 q ME\r\nx\r\nmn\r\nms q1 1 C1 q\r\nx\r\nmg q1 s v q k\r\nms nx 1 MA q\r\nx\r\nms nx 1 MA N30\r\nx\r\nmg nx v t\r\n")]),
        cat(&[lit(b"ms q1 1\r\nx\r\nmg q1 O123456789012345678901234567890123\r\nmg q1 Oa b\r\nmg q1 t T0\r\n")]),
        cat(&[lit(b"ms q1 1\r\nx\r\nmd q1 I T30\r\nmg q1 v c t\r\nmg q1 v c\r\nms q1 1 I\r\nz\r\nms q1 1\r\nz\r\nmg q1 v\r\n")]),
        cat(&[lit(b"ms q1 1\r\nz\r\nmg  q1  v \r\nmg q1 v\n")]),
        cat(&[lit(b"ms q1 1 F-1\r\nx\r\nms q1 1 Fx\r\nx\r\nms q1 1 T-1\r\nx\r\nmg q1\r\nms q1 x\r\nms q1 -1\r\nms q1 1 MZ\r\nx\r\n")]),
        cat(&[lit(b"ma cnt2 N0 J18446744073709551615 v\r\nma cnt2 v\r\nma cnt2 MD D5 v\r\nma cnt2 Jx N0\r\nma cnt2 D-1\r\n")]),
        cat(&[lit(b"md nope q\r\nmd nope\r\nmd nope C5\r\nset e 0 0 1\r\n1\r\nmd e C5\r\nmd e C5 q\r\nmn\r\nmg e v f\r\n")]),
        cat(&[lit(b"mg a a\r\nms a 1 v\r\nx\r\nmg "), rep(b'k', 250), lit(b" k\r\n")]),
        cat(&[lit(b"mg nokey O1 k v\r\nmg nokey k O1 q\r\nmn\r\nmg nokey s t\r\n")]),
        cat(&[lit(b"ms "), rep(b'k', 251), lit(b" 1\r\nx\r\nmn\r\n")]),
        cat(&[lit(b"ms abc 1 O9 k c b\r\nx\r\nms abc 1 k O9 c T0 F3 I q\r\nx\r\nmn\r\n")]),
        cat(&[lit(b"ms abc 1 zz\r\nx\r\nms abc 1 c c\r\nx\r\nmn\r\n")]),
        cat(&[lit(b"md abc O5 k q\r\nmd abc O5 k\r\nma abc O5 k\r\nma abc N0 O5 k t c v\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nx\r\nset a 0 0 1 noreply\r\nxy\r\nincr a x noreply\r\ntouch a x noreply\r\nincr a 1 noreply\r\nget a\r\n")]),
        cat(&[lit(b"set "), rep(b'k', 251), lit(b" 0 0 1 noreply\r\nx\r\ndelete "), rep(b'k', 251), lit(b" noreply\r\nmn\r\n")]),
        cat(&[lit(b"ms abc 2 T-1\r\nxx\r\nmg abc v\r\nms abc S2\r\nxx\r\nms abc 2 S3\r\nxx\r\n")]),
        cat(&[lit(b"mg abc v f\r\nms abc 2 MS F7 T100\r\nhi\r\nmg abc f t v s\r\nms abc 1 MA\r\nj\r\nmg abc f t v s c\r\n")]),
        cat(&[lit(b"mg abc E5\r\nmn extra\r\nmg a b\r\nms abc 1\r\nx\r\nmg abc O\r\n")]),
        cat(&[lit(b"mg abc Tx v\r\nmg abc Nx\r\nms abc 1 Tx\r\nx\r\nms abc 1 Cx\r\nx\r\nmd abc Cx\r\nma abc Jx N0\r\nms abc 1\r\nx\r\nmg abc T5 t v\r\nmn\r\n")]),
        cat(&[lit(b"ms abc 1 c k\r\nx\r\nms abc 1 I\r\nx\r\nmd abc q k O1\r\nmd abc I q\r\nmn\r\n")]),
        cat(&[lit(b"ms abc 1 C0\r\nx\r\nms abc 1 MR\r\nx\r\nms nnn 1 MR\r\nx\r\nms nnn 1 MA\r\nx\r\nms nnn 1 MP\r\nx\r\n")]),
        cat(&[lit(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nx\r\ngets a\r\ncas a 0 0 1 1\r\ny\r\ncas zz 0 0 1 1\r\nx\r\ndelete a\r\ndelete a\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nx\r\ntouch a 10\r\ntouch zz 10\r\ngat 100 a zz\r\ngats 100 a\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nx\r\nflush_all\r\nget a\r\nset a 0 0 1\r\nx\r\nflush_all noreply\r\nget a\r\n")]),
        cat(&[lit(b"ms hk 2\r\nhi\r\nmg hk h l v\r\nmg hk h l\r\nmg hk l h t f s k O9 c\r\n")]),
        cat(&[lit(b"ms Zm9v 3 b F5\r\nbar\r\nmg Zm9v b k v f\r\nget foo\r\nmd Zm9v b k q\r\nmg foo v\r\n")]),
        cat(&[lit(b"set foo 0 0 3\r\nbar\r\nmg Zm9v b v\r\nma Zm9v b\r\nset n 0 0 1\r\n5\r\nma bg== b v k O1\r\n")]),
        cat(&[lit(b"mg hk T10 t v\r\nms hk 1 T10\r\nx\r\nmg hk T0 t\r\nmg hk t\r\n")]),
        cat(&[lit(b"ms wk 1\r\nx\r\nmd wk I\r\nmg wk v c\r\nmg wk v\r\nmd wk I\r\nmg wk\r\nms wk 1\r\ny\r\nmg wk v\r\n")]),
        cat(&[lit(b"mg vk N30 q\r\nmg vk N30\r\nmg vk s v\r\n")]),
        cat(&[lit(b"gets a b\r\nset a 1 0 1\r\nx\r\nset b 2 0 2\r\nyy\r\ngets a b\r\ngats 0 b a\r\n")]),
        cat(&[lit(b"incr a 1\r\ndecr a 1\r\nset a 0 0 4\r\n1000\r\ndecr a 1\r\nget a\r\nincr a 9000\r\nget a\r\n")]),
        cat(&[lit(b"set a 0 0 1\r\nx\r\nappend a 0 0 1 noreply\r\ny\r\nprepend a 0 0 1 noreply\r\nz\r\nget a\r\nreplace a 5 0 1 noreply\r\nr\r\nget a\r\n")]),
        cat(&[lit(b"touch a 0\r\nset a 0 100 1\r\nx\r\ntouch a 0\r\nmg a t\r\ntouch a -1\r\nget a\r\n")]),
        cat(&[lit(b"mn\r\nmn\r\nmn\r\n")]),
        cat(&[lit(b"delete a noreply\r\ndelete a 0 noreply\r\ndelete a 0 0\r\ndelete\r\ndelete a b c d\r\n")]),
        cat(&[lit(b"cas a 0 0 1 1 noreply\r\nx\r\ncas a 0 0 1 noreply\r\nx\r\n")]),
        cat(&[lit(b"ma m1 N0 J0 MD D1 v\r\nma m1 MI D18446744073709551615 v\r\nma m1 v\r\n")]),
        cat(&[lit(b"ma m2 T-1 N10 J5 v t\r\nma m2 v t T100\r\n")]),
    ]
}

#[test]
fn replies_match_real_memcached() {
    let real = start_memcached(&[]);
    let ours = start_dkc(&[]);
    let cases = cases();
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let expected = run(real.addr, case);
        let got = run(ours.addr, case);
        if expected != got {
            failures.push(format!(
                "case {index}: {}\n  memcached:     {expected:?}\n  dkc-memcached: {got:?}",
                show(case)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} differential cases identical", cases.len());
}

/// Names of `STAT` lines in a stats reply, with their values.
fn stats(addr: SocketAddr) -> Vec<(String, String)> {
    stats_group(addr, b"stats\r\n")
}

fn stats_group(addr: SocketAddr, request: &[u8]) -> Vec<(String, String)> {
    let reply = exchange(addr, request, Some(b"END\r\n"));
    String::from_utf8_lossy(&reply)
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(stats: &[(String, String)], name: &str) -> String {
    stats
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("STAT {name} missing"))
}

/// Every name we print exists in memcached's reply, in memcached's relative order.
fn assert_names_in_memcached_order(real: &[(String, String)], ours: &[(String, String)]) {
    let real_names: Vec<&str> = real.iter().map(|(k, _)| k.as_str()).collect();
    let mut last = 0;
    for (name, _) in ours {
        let at = real_names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("STAT {name} is not a memcached 1.6 stat"));
        assert!(at >= last, "STAT {name} is out of memcached's order");
        last = at;
    }
}

#[test]
fn stats_use_memcached_names_and_counts() {
    let real = start_memcached(&[]);
    let ours = start_dkc(&[]);
    let sequence: &[u8] = b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\nx\r\nget a b c\r\nget zz\r\nincr a 5\r\nincr zz 1\r\n\
decr a 1\r\ndelete b\r\ndelete b\r\ntouch a 100\r\ntouch zz 100\r\ncas a 0 0 1 1\r\n1\r\ncas zz 0 0 1 1\r\n1\r\nmn\r\n";
    for server in [&real, &ours] {
        exchange(server.addr, sequence, Some(b"MN\r\n"));
    }
    let real_stats = stats(real.addr);
    let our_stats = stats(ours.addr);
    assert_names_in_memcached_order(&real_stats, &our_stats);
    let real_settings = stats_group(real.addr, b"stats settings\r\n");
    let our_settings = stats_group(ours.addr, b"stats settings\r\n");
    assert_names_in_memcached_order(&real_settings, &our_settings);
    for name in [
        "udpport",
        "cas_enabled",
        "binding_protocol",
        "item_size_max",
    ] {
        assert_eq!(
            value(&real_settings, name),
            value(&our_settings, name),
            "stats settings {name}"
        );
    }
    // Counters with one meaning on both sides must agree after the same sequence.
    for name in [
        "cmd_get",
        "cmd_set",
        "get_hits",
        "get_misses",
        "delete_hits",
        "delete_misses",
        "incr_hits",
        "incr_misses",
        "decr_hits",
        "decr_misses",
        "touch_hits",
        "touch_misses",
        "cmd_touch",
        "cas_hits",
        "cas_misses",
        "cas_badval",
        "curr_items",
    ] {
        assert_eq!(
            value(&real_stats, name),
            value(&our_stats, name),
            "STAT {name}"
        );
    }
}
