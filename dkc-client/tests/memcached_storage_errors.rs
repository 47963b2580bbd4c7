//! A storage that fails or hangs (a cluster that is down or partitioned) must give clients
//! `SERVER_ERROR` lines on a connection that stays usable: never a hang, never a disconnect.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dkc_client::memcached::storage::{
    Arith, ArithOutcome, Cas, DeleteOptions, DeleteOutcome, Expiry, Fetched, GetOptions, NewItem,
    Storage, StorageError, StorageResult, StorageStats, StoreMode, StoreOutcome,
};
use dkc_client::memcached::{Server, ServerConfig};

/// Every call fails (`hang == false`) or never returns (`hang == true`).
struct BrokenStorage {
    hang: bool,
}

impl BrokenStorage {
    async fn fail<T>(&self) -> StorageResult<T> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        Err(StorageError::Unavailable {
            reason: "no live owner for slot 7".to_string(),
        })
    }
}

impl Storage for BrokenStorage {
    fn now_secs(&self) -> u64 {
        1_800_000_000
    }
    async fn get(&self, _: &[Bytes], _: GetOptions) -> StorageResult<Vec<Option<Fetched>>> {
        self.fail().await
    }
    async fn store(
        &self,
        _: StoreMode,
        _: Bytes,
        _: NewItem,
        _: Option<Cas>,
    ) -> StorageResult<StoreOutcome> {
        self.fail().await
    }
    async fn delete(&self, _: Bytes, _: DeleteOptions) -> StorageResult<DeleteOutcome> {
        self.fail().await
    }
    async fn arith(&self, _: Bytes, _: Arith) -> StorageResult<ArithOutcome> {
        self.fail().await
    }
    async fn touch(&self, _: Bytes, _: Expiry) -> StorageResult<bool> {
        self.fail().await
    }
    async fn flush_all(&self, _: Option<u64>) -> StorageResult<()> {
        self.fail().await
    }
    async fn stats(&self) -> StorageResult<StorageStats> {
        self.fail().await
    }
}

fn start(hang: bool) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let (listener, addr) =
                dkc_client::memcached::server::bind("127.0.0.1:0".parse().expect("addr"))
                    .await
                    .expect("bind");
            tx.send(addr).expect("send addr");
            let config = ServerConfig {
                storage_timeout: Duration::from_millis(300),
                ..ServerConfig::default()
            };
            let _ = Server::new(Arc::new(BrokenStorage { hang }), config)
                .serve(listener)
                .await;
        });
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("server address")
}

/// Sends `request` and reads until `lines` reply lines arrived.
fn ask(stream: &mut TcpStream, request: &[u8], lines: usize) -> String {
    stream.write_all(request).expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while reply.windows(2).filter(|w| w == b"\r\n").count() < lines {
        let n = stream
            .read(&mut chunk)
            .expect("reply before the read timeout");
        assert!(
            n > 0,
            "server closed the connection; got {:?}",
            String::from_utf8_lossy(&reply)
        );
        reply.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn failing_storage_answers_server_error_and_keeps_the_connection() {
    let addr = start(false);
    let mut stream = TcpStream::connect(addr).expect("connect");
    let err = "SERVER_ERROR cluster unavailable: no live owner for slot 7\r\n";
    assert_eq!(ask(&mut stream, b"get a b\r\n", 1), err);
    assert_eq!(ask(&mut stream, b"set a 0 0 1\r\nx\r\n", 1), err);
    assert_eq!(ask(&mut stream, b"incr a 1\r\n", 1), err);
    assert_eq!(ask(&mut stream, b"delete a\r\n", 1), err);
    assert_eq!(ask(&mut stream, b"mg a v\r\n", 1), err);
    assert_eq!(ask(&mut stream, b"ms a 1\r\nx\r\n", 1), err);
    // noreply stays silent; the next reply is the version.
    assert!(
        ask(&mut stream, b"set a 0 0 1 noreply\r\nx\r\nversion\r\n", 1).starts_with("VERSION ")
    );
}

#[test]
fn hanging_storage_times_out_with_server_error() {
    let addr = start(true);
    let mut stream = TcpStream::connect(addr).expect("connect");
    let started = Instant::now();
    assert_eq!(
        ask(&mut stream, b"get a\r\nset a 0 0 1\r\nx\r\n", 2),
        "SERVER_ERROR storage timed out after 300 ms\r\nSERVER_ERROR storage timed out after 300 ms\r\n"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(ask(&mut stream, b"version\r\n", 1).starts_with("VERSION "));
}
