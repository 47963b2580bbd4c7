//! `dkc` — get/set/delete/cas/incr/subkeys/scan/stats/flush against a dkc cluster from the shell
//! (k2hdkclinetool's role). A thin `main` over [`dkc_client::client`]: parse the arguments,
//! attach to this host's chmpx, run one command, print, exit with a code saying what happened.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dkc_client::client::{
    Client, ClientError, ClientOptions, Expiry, Item, ScanQuery, StoreOptions,
};
use serde_json::{json, Value};

const EXIT_HELP: &str = "\
Values: give them as arguments, or `-` to read the value from stdin (binary-safe).
Output: values print with non-printable bytes escaped as \\xNN; --hex prints hex, --raw the bytes.

Exit codes:
  0  success
  1  not found / not stored / exists / cas mismatch
  2  usage or config error
  3  cluster unavailable or timeout (chmpx not running, no live owner, no answer)
  4  server error (too large, not numeric, protocol, storage)";

/// Exit code: success.
const EXIT_OK: u8 = 0;
/// Exit code: not found, not stored, exists, cas mismatch.
const EXIT_MISS: u8 = 1;
/// Exit code: usage or config error.
const EXIT_USAGE: u8 = 2;
/// Exit code: cluster unavailable or timeout.
const EXIT_UNAVAILABLE: u8 = 3;
/// Exit code: server error.
const EXIT_SERVER: u8 = 4;
/// Most items `dkc scan` asks for per call.
const SCAN_PAGE_MAX: u32 = 1_000;

/// Talk to a dkc cluster through this host's chmpx.
#[derive(Debug, Parser)]
#[command(name = "dkc", version, after_help = EXIT_HELP)]
struct Cli {
    /// The cluster's config file (this host's SLVNODE or SVRNODE entry is used); default
    /// $DKCCONFFILE.
    #[arg(long)]
    conf: Option<PathBuf>,
    /// Which entry of the file, when several run on this host; with --cluster, the chmpx's
    /// control port.
    #[arg(long)]
    ctlport: Option<u16>,
    /// Cluster name (GROUP), to attach without a config file (needs --ctlport).
    #[arg(long, conflicts_with = "conf")]
    cluster: Option<String>,
    /// Per-request timeout in milliseconds (also bounds attaching to chmpx).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print results as JSON.
    #[arg(long)]
    json: bool,
    /// Print values (and keys) as hex.
    #[arg(long, conflicts_with = "raw")]
    hex: bool,
    /// Print values as raw bytes (get and gat only).
    #[arg(long)]
    raw: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Args)]
struct StoreArgs {
    key: String,
    /// The value, or `-` for stdin.
    value: String,
    /// Client flags stored with the item.
    #[arg(long, default_value_t = 0)]
    flags: u32,
    /// Seconds until the item expires (0 = never).
    #[arg(long, default_value_t = 0)]
    expire: u64,
}

#[derive(Debug, Args)]
struct CountArgs {
    key: String,
    /// Amount (default 1).
    #[arg(default_value_t = 1)]
    delta: u64,
    /// Value stored when the key is missing (else exit 1).
    #[arg(long)]
    initial: Option<u64>,
    /// Seconds until an item created by --initial expires (0 = never).
    #[arg(long, default_value_t = 0)]
    expire: u64,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print the value of a key.
    Get { key: String },
    /// Print the values of several keys (missing ones are left out).
    Mget { keys: Vec<String> },
    /// Store a value.
    Set(StoreArgs),
    /// Store only if the key does not exist.
    Add(StoreArgs),
    /// Store only if the key exists.
    Replace(StoreArgs),
    /// Append bytes to an existing value.
    Append { key: String, value: String },
    /// Prepend bytes to an existing value.
    Prepend { key: String, value: String },
    /// Store only if the item's version (from `get --json`) is still VERSION.
    Cas {
        key: String,
        value: String,
        version: u64,
        #[arg(long, default_value_t = 0)]
        flags: u32,
        #[arg(long, default_value_t = 0)]
        expire: u64,
    },
    /// Delete a key.
    Delete {
        key: String,
        /// Delete only if the version is still this.
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Add to a decimal value.
    Incr(CountArgs),
    /// Subtract from a decimal value (floors at 0).
    Decr(CountArgs),
    /// Set a new expiry (seconds from now, 0 = never).
    Touch { key: String, expire: u64 },
    /// Set a new expiry and print the value.
    Gat { key: String, expire: u64 },
    /// Subkey lists.
    #[command(subcommand)]
    Subkeys(SubCmd),
    /// List keys in order across every server node.
    Scan {
        /// Keys starting with this.
        #[arg(long, conflicts_with_all = ["start", "end"])]
        prefix: Option<String>,
        /// First key (inclusive).
        #[arg(long)]
        start: Option<String>,
        /// Last key (exclusive).
        #[arg(long)]
        end: Option<String>,
        /// Most items to print.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continue after this key (the cursor a previous scan printed).
        #[arg(long)]
        cursor: Option<String>,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
    },
    /// Counters of every server node.
    Stats,
    /// Delete every item of the cluster.
    Flush {
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SubCmd {
    /// Print a key's subkey list.
    List { key: String },
    /// Replace a key's subkey list.
    Set { key: String, subkeys: Vec<String> },
    /// Add one subkey name.
    Add { key: String, subkey: String },
    /// Remove one subkey name.
    Remove { key: String, subkey: String },
    /// Empty the list.
    Clear { key: String },
    /// Delete the key and, recursively, every key its lists name.
    Delete { key: String },
}

/// How bytes are shown.
#[derive(Clone, Copy)]
enum Show {
    Escaped,
    Hex,
}

fn show(bytes: &[u8], how: Show) -> String {
    match how {
        Show::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Show::Escaped => {
            let mut s = String::new();
            for &b in bytes {
                match b {
                    b'\\' => s.push_str("\\\\"),
                    0x20..=0x7e => s.push(b as char),
                    b'\n' => s.push_str("\\n"),
                    b'\t' => s.push_str("\\t"),
                    _ => s.push_str(&format!("\\x{b:02x}")),
                }
            }
            s
        }
    }
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match &e {
            e if e.is_miss() => EXIT_MISS,
            e if e.is_unavailable() => EXIT_UNAVAILABLE,
            ClientError::Config(_) | ClientError::InvalidArgument(_) => EXIT_USAGE,
            _ => EXIT_SERVER,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

fn value_bytes(arg: &str) -> Result<Vec<u8>, Failure> {
    if arg == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| usage(format!("cannot read the value from stdin: {e}")))?;
        Ok(v)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

fn expiry(secs: u64) -> Expiry {
    if secs == 0 {
        Expiry::Never
    } else {
        Expiry::In(Duration::from_secs(secs))
    }
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    let apply = |mut o: ClientOptions| {
        if let Some(ms) = cli.timeout_ms {
            o.request_timeout = Duration::from_millis(ms);
            o.attach.connect_timeout_ms = ms;
        }
        o
    };
    let env_conf = std::env::var_os("DKCCONFFILE")
        .filter(|_| cli.cluster.is_none())
        .map(PathBuf::from);
    match (
        cli.conf.as_ref().or(env_conf.as_ref()),
        &cli.cluster,
        cli.ctlport,
    ) {
        (Some(conf), _, ctlport) => {
            let cfg = chmpx::config::Config::load(conf).map_err(|e| usage(e.to_string()))?;
            let opts = apply(ClientOptions::from_config(&cfg));
            Ok(Client::from_config(&cfg, ctlport, opts)?)
        }
        (None, Some(cluster), Some(ctlport)) => Ok(Client::connect(
            cluster,
            ctlport,
            apply(ClientOptions::default()),
        )?),
        _ => Err(usage(
            "give --conf FILE [--ctlport N] (or DKCCONFFILE), or --cluster NAME --ctlport N",
        )),
    }
}

struct Out {
    json: bool,
    how: Show,
    raw: bool,
}

impl Out {
    fn item_json(&self, i: &Item) -> Value {
        json!({
            "key": show(&i.key, self.how),
            "value": show(&i.value, self.how),
            "flags": i.flags,
            "expire_at": i.expire_at,
            "version": i.version,
        })
    }

    fn print_json(&self, v: Value) {
        println!("{v}");
    }

    fn item(&self, item: &Item) -> Result<(), Failure> {
        if self.json {
            self.print_json(self.item_json(item));
        } else if self.raw {
            let mut out = std::io::stdout().lock();
            out.write_all(&item.value)
                .and_then(|()| out.flush())
                .map_err(|e| usage(format!("cannot write to stdout: {e}")))?;
        } else {
            println!("{}", show(&item.value, self.how));
        }
        Ok(())
    }

    fn version(&self, what: &str, version: u64) {
        if self.json {
            self.print_json(json!({ "result": what, "version": version }));
        } else {
            println!("{what} (version {version})");
        }
    }

    fn done(&self, what: &str) {
        if self.json {
            self.print_json(json!({ "result": what }));
        } else {
            println!("{what}");
        }
    }

    fn number(&self, n: u64) {
        if self.json {
            self.print_json(json!({ "value": n }));
        } else {
            println!("{n}");
        }
    }

    fn list(&self, list: &[Vec<u8>]) {
        if self.json {
            let l: Vec<String> = list.iter().map(|k| show(k, self.how)).collect();
            self.print_json(json!({ "subkeys": l }));
        } else {
            for k in list {
                println!("{}", show(k, self.how));
            }
        }
    }
}

fn not_found(key: &str) -> Failure {
    ClientError::NotFound {
        key: key.to_string(),
    }
    .into()
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let out = Out {
        json: cli.json,
        how: if cli.hex { Show::Hex } else { Show::Escaped },
        raw: cli.raw,
    };
    let c = connect(cli)?;
    let store = |a: &StoreArgs| -> Result<(Vec<u8>, StoreOptions), Failure> {
        Ok((
            value_bytes(&a.value)?,
            StoreOptions::new().flags(a.flags).expiry(expiry(a.expire)),
        ))
    };
    match &cli.cmd {
        Cmd::Get { key } => match c.get(key)? {
            Some(item) => out.item(&item)?,
            None => return Err(not_found(key)),
        },
        Cmd::Gat { key, expire } => match c.get_and_touch(key, expiry(*expire))? {
            Some(item) => out.item(&item)?,
            None => return Err(not_found(key)),
        },
        Cmd::Mget { keys } => {
            let items = c.get_many(keys)?;
            if out.json {
                let l: Vec<Value> = items.iter().map(|i| out.item_json(i)).collect();
                out.print_json(json!({ "items": l }));
            } else {
                for i in &items {
                    println!("{} {}", show(&i.key, out.how), show(&i.value, out.how));
                }
            }
        }
        Cmd::Set(a) => {
            let (v, o) = store(a)?;
            out.version("stored", c.set(&a.key, v, o)?);
        }
        Cmd::Add(a) => {
            let (v, o) = store(a)?;
            out.version("stored", c.add(&a.key, v, o)?);
        }
        Cmd::Replace(a) => {
            let (v, o) = store(a)?;
            out.version("stored", c.replace(&a.key, v, o)?);
        }
        Cmd::Append { key, value } => out.version("stored", c.append(key, value_bytes(value)?)?),
        Cmd::Prepend { key, value } => out.version("stored", c.prepend(key, value_bytes(value)?)?),
        Cmd::Cas {
            key,
            value,
            version,
            flags,
            expire,
        } => {
            let o = StoreOptions::new().flags(*flags).expiry(expiry(*expire));
            out.version("stored", c.cas(key, value_bytes(value)?, *version, o)?);
        }
        Cmd::Delete { key, cas } => {
            match cas {
                Some(v) => c.delete_if(key, *v)?,
                None => c.delete(key)?,
            }
            out.done("deleted");
        }
        Cmd::Incr(a) => out.number(c.incr(&a.key, a.delta, a.initial, expiry(a.expire))?),
        Cmd::Decr(a) => out.number(c.decr(&a.key, a.delta, a.initial, expiry(a.expire))?),
        Cmd::Touch { key, expire } => {
            c.touch(key, expiry(*expire))?;
            out.done("touched");
        }
        Cmd::Subkeys(sub) => match sub {
            SubCmd::List { key } => out.list(&c.list_subkeys(key)?),
            SubCmd::Set { key, subkeys } => {
                c.set_subkeys(key, subkeys)?;
                out.done("stored");
            }
            SubCmd::Add { key, subkey } => {
                c.add_subkey(key, subkey)?;
                out.done("stored");
            }
            SubCmd::Remove { key, subkey } => {
                c.remove_subkey(key, subkey)?;
                out.done("removed");
            }
            SubCmd::Clear { key } => {
                c.clear_subkeys(key)?;
                out.done("cleared");
            }
            SubCmd::Delete { key } => {
                let n = c.delete_with_children(key)?;
                if out.json {
                    out.print_json(json!({ "result": "deleted", "keys": n }));
                } else {
                    println!("deleted {n} keys");
                }
            }
        },
        Cmd::Scan {
            prefix,
            start,
            end,
            limit,
            cursor,
            keys_only,
        } => scan(&c, &out, prefix, start, end, *limit, cursor, *keys_only)?,
        Cmd::Stats => {
            let stats = c.stats()?;
            if out.json {
                let nodes: Vec<Value> = stats
                    .iter()
                    .map(|n| match &n.stats {
                        Ok(m) => json!({ "node": n.node, "stats": m }),
                        Err(e) => json!({ "node": n.node, "error": e }),
                    })
                    .collect();
                out.print_json(json!({ "nodes": nodes }));
            } else {
                for n in &stats {
                    match &n.stats {
                        Ok(m) => {
                            for (k, v) in m {
                                println!("{} {k} {v}", n.node);
                            }
                        }
                        Err(e) => println!("{} error {e}", n.node),
                    }
                }
            }
        }
        Cmd::Flush { yes } => {
            let n = c.flush(*yes)?;
            if out.json {
                out.print_json(json!({ "result": "flushed", "deleted": n }));
            } else {
                println!("flushed ({n} items deleted)");
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn scan(
    c: &Client,
    out: &Out,
    prefix: &Option<String>,
    start: &Option<String>,
    end: &Option<String>,
    limit: u32,
    cursor: &Option<String>,
    keys_only: bool,
) -> Result<(), Failure> {
    if limit == 0 {
        return Err(usage("--limit must be at least 1"));
    }
    let mut query = match (prefix, start, end) {
        (Some(p), _, _) => ScanQuery::prefix(p.as_bytes()),
        (None, None, None) => ScanQuery::all(),
        (None, s, e) => ScanQuery::range(
            s.clone().unwrap_or_default().into_bytes(),
            e.clone().map(String::into_bytes),
        ),
    }
    .keys_only(keys_only)
    .after(cursor.clone().map(String::into_bytes));
    let mut items = Vec::new();
    let mut next = None;
    while items.len() < limit as usize {
        let want = (limit as usize - items.len()).min(SCAN_PAGE_MAX as usize) as u32;
        query = query.limit(want);
        let batch = c.scan(&query)?;
        items.extend(batch.items);
        next = batch.cursor;
        match &next {
            Some(cur) => query = query.after(Some(cur.clone())),
            None => break,
        }
    }
    if out.json {
        let l: Vec<Value> = items.iter().map(|i| out.item_json(i)).collect();
        let cursor = next.as_ref().map(|c| show(c, out.how));
        out.print_json(json!({ "items": l, "cursor": cursor }));
    } else {
        for i in &items {
            if keys_only {
                println!("{}", show(&i.key, out.how));
            } else {
                println!("{} {}", show(&i.key, out.how), show(&i.value, out.how));
            }
        }
        if let Some(c) = next {
            // A raw cursor (not escaped) so that it can be passed back with --cursor.
            eprintln!("more: --cursor {}", String::from_utf8_lossy(&c));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(f) => {
            if cli.json {
                println!("{}", json!({ "error": f.message, "exit": f.code }));
            }
            eprintln!("dkc: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
