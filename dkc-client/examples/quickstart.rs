//! A tour of the driver against a running cluster: store and read, add/cas/incr with their
//! typed errors, subkeys, a paged prefix scan and per-node stats, with the blocking client
//! and then the async one.
//!
//! ```text
//! chmpx --conf conf/local-3node.ini --ctlport 8021   (and 8023, 8025), dkc-server likewise,
//! chmpx --conf conf/local-slave.ini
//! cargo run -p dkc-client --example quickstart -- conf/local-slave.ini
//! ```

use std::time::Duration;

use dkc_client::client::{AsyncClient, Client, ClientError, Expiry, ScanQuery, StoreOptions};

fn main() -> Result<(), ClientError> {
    let conf = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "conf/local-slave.ini".to_string());
    let ctlport = std::env::args().nth(2).and_then(|p| p.parse().ok());
    let client = Client::from_conf(&conf, ctlport)?;
    println!("attached; server nodes: {:?}", client.topology().servers);

    let opts = StoreOptions::new()
        .flags(1)
        .expiry(Expiry::In(Duration::from_secs(600)));
    let version = client.set("quickstart:greeting", "hello", opts)?;
    let item = client.get("quickstart:greeting")?;
    println!("set version {version}, got {item:?}");

    match client.add("quickstart:greeting", "again", StoreOptions::new()) {
        Err(ClientError::Exists { key }) => println!("add refused: {key} exists"),
        other => println!("add: {other:?}"),
    }
    match client.cas(
        "quickstart:greeting",
        "stale",
        version.wrapping_sub(1),
        opts,
    ) {
        Err(ClientError::CasMismatch { .. }) => println!("cas with a stale version refused"),
        other => println!("cas: {other:?}"),
    }
    let hits = client.incr("quickstart:hits", 1, Some(1), Expiry::Never)?;
    println!("hits = {hits}");

    client.set_subkeys("quickstart:greeting", &["quickstart:hits"])?;
    println!("subkeys: {:?}", client.list_subkeys("quickstart:greeting")?);

    let mut query = ScanQuery::prefix("quickstart:").limit(10);
    loop {
        let batch = client.scan(&query)?;
        for i in &batch.items {
            println!("scan: {}", String::from_utf8_lossy(&i.key));
        }
        match batch.cursor {
            Some(c) => query = query.after(Some(c)),
            None => break,
        }
    }
    for node in client.stats()? {
        println!("{}: {:?}", node.node, node.stats.map(|m| m.len()));
    }

    // The same attachment, async.
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let aclient: AsyncClient = client.to_async();
    rt.block_on(async {
        let items = aclient
            .get_many(&["quickstart:greeting", "quickstart:hits", "quickstart:none"])
            .await?;
        println!("async get_many: {} items", items.len());
        let deleted = aclient.delete_with_children("quickstart:greeting").await?;
        println!("deleted {deleted} keys");
        Ok(())
    })
}
