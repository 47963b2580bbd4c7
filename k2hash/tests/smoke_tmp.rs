use k2hash::*;
#[test]
fn smoke() {
    let d = tempfile::tempdir().unwrap();
    for o in [
        OpenOptions::memory(),
        OpenOptions::full_map(d.path().join("a")).create(true),
        OpenOptions::index_map(d.path().join("b")).create(true),
    ] {
        let s = o.clone().shard_bits(2).table_bits(3).open().unwrap();
        for i in 0..5000u64 {
            s.set(
                format!("key{i}").as_bytes(),
                &i.to_le_bytes(),
                Meta {
                    version: i,
                    ..Default::default()
                },
            )
            .unwrap();
        }
        for i in 0..5000u64 {
            let r = s.get(format!("key{i}").as_bytes()).unwrap().unwrap();
            assert_eq!(r.value, i.to_le_bytes());
        }
        println!("{:?}", s.stats());
        let rep = s.verify().unwrap();
        assert!(rep.is_clean(), "{rep:?}");
        drop(s);
        if o.mode() != Mode::Memory {
            let s = o.clone().open().unwrap();
            assert_eq!(s.stats().items, 5000);
            for i in 0..5000u64 {
                assert!(s.get(format!("key{i}").as_bytes()).unwrap().is_some());
            }
        }
    }
}
