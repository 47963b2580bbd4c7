//! Scenario tests of the real `k2htool` binary on temporary files: load/export round trip of
//! binary data, verify on clean, corrupted and truncated files, compact, bench, and the errors
//! a user gets for bad arguments.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dkc_tools::k2htool::line_format::{parse_line, write_line, LineRecord};

/// Records in the round-trip data set (enough to fill several index shards and tables).
const RECORDS: u64 = 3_000;
/// A value no generated record contains, to find its bytes inside the file.
const MARKER_VALUE: &[u8] = b"MARKER-VALUE-0123456789-abcdefghijklmnopqrstuvwxyz-MARKER";
/// expire_at for records that must stay live during the test: far in the future.
const FAR_FUTURE_UNIX_SECS: u64 = 4_000_000_000;

fn k2htool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_k2htool"))
        .args(args)
        .output()
        .expect("run k2htool")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs k2htool and insists it succeeded, showing its stderr otherwise.
fn k2htool_ok(args: &[&str]) -> Output {
    let out = k2htool(args);
    assert!(
        out.status.success(),
        "k2htool {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Deterministic records covering every byte value in keys and values, empty values, flags,
/// expiry, versions, tombstones and subkeys with separators in them.
fn sample_records() -> Vec<LineRecord> {
    let mut records = Vec::new();
    for i in 0..RECORDS {
        let mut key = format!("key-{i}-").into_bytes();
        key.push((i % 256) as u8);
        key.push(((i * 7 + 3) % 256) as u8);
        let value: Vec<u8> = match i % 5 {
            0 => Vec::new(),
            1 => (0..=255u8).collect(),
            2 => vec![b'\\', b'\t', b'\n', b'\r', b',', 0, 0xff],
            3 => (0..(i % 3000)).map(|j| (j * 31 + i) as u8).collect(),
            _ => format!("plain value {i}").into_bytes(),
        };
        let tombstone = i % 17 == 0;
        records.push(LineRecord {
            key,
            value: if tombstone { Vec::new() } else { value },
            flags: (i as u32).wrapping_mul(2_654_435_761),
            expire_at: if i % 3 == 0 { FAR_FUTURE_UNIX_SECS } else { 0 },
            version: 1_000_000 + i,
            tombstone,
            subkeys: if i % 11 == 1 && !tombstone {
                vec![b"child,1".to_vec(), vec![0, 9, 10, 13, 255], b"c".to_vec()]
            } else {
                Vec::new()
            },
        });
    }
    records.push(LineRecord {
        key: b"marker".to_vec(),
        value: MARKER_VALUE.to_vec(),
        version: 7,
        ..LineRecord::default()
    });
    records
}

/// Writes records as an export-format file and returns its sorted set of lines.
fn write_input(path: &Path, records: &[LineRecord]) -> BTreeSet<Vec<u8>> {
    let mut all = Vec::new();
    let mut lines = BTreeSet::new();
    for record in records {
        let mut line = Vec::new();
        write_line(record, &mut line);
        all.extend_from_slice(&line);
        lines.insert(line);
    }
    std::fs::write(path, all).expect("write input");
    lines
}

fn read_lines(path: &Path) -> BTreeSet<Vec<u8>> {
    let bytes = std::fs::read(path).expect("read export");
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

struct Loaded {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    file: PathBuf,
    lines: BTreeSet<Vec<u8>>,
}

fn loaded_file() -> Loaded {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.txt");
    let file = dir.path().join("data.k2h");
    let lines = write_input(&input, &sample_records());
    let out = k2htool_ok(&["load", p(&file), "--input", p(&input)]);
    // stderr is a pipe here: no progress bar may be drawn on it, only the summary line.
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    assert!(stderr.starts_with("loaded "), "{stderr:?}");
    Loaded {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        file,
        lines,
    }
}

#[test]
fn load_then_export_round_trips_binary_data() {
    let loaded = loaded_file();
    let output = loaded.dir.join("export.txt");
    k2htool_ok(&["export", p(&loaded.file), "--output", p(&output)]);
    let exported = read_lines(&output);
    assert_eq!(exported.len(), loaded.lines.len());
    let missing: Vec<_> = loaded.lines.difference(&exported).take(3).collect();
    assert!(missing.is_empty(), "records lost or changed: {missing:?}");
    // Every exported line parses back.
    for line in &exported {
        parse_line(&line[..line.len() - 1]).expect("exported line parses");
    }
    // Export to stdout gives the same lines, and index-map mode reads the same file.
    let stdout = k2htool_ok(&["export", p(&loaded.file), "--mode", "index"]).stdout;
    let via_stdout: BTreeSet<Vec<u8>> = stdout
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(via_stdout, exported);
    // --live-only leaves out exactly the tombstones.
    let live = k2htool_ok(&["export", p(&loaded.file), "--live-only"]).stdout;
    let tombstones = sample_records().iter().filter(|r| r.tombstone).count();
    assert_eq!(
        live.iter().filter(|&&b| b == b'\n').count(),
        loaded.lines.len() - tombstones
    );
}

#[test]
fn load_from_stdin_and_if_newer_keeps_newer_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("data.k2h");
    let run_load = |input: &[u8], extra: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_k2htool"))
            .args(["load", p(&file)])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "load failed: {}", text(&out.stderr));
    };
    run_load(b"a\tnew\t0\t0\t20\t0\t\n\nb\tx\t0\t0\t5\t0\t\n", &[]);
    run_load(
        b"a\told\t0\t0\t10\t0\t\nb\ty\t0\t0\t6\t0\t\n",
        &["--if-newer"],
    );
    let out = text(&k2htool_ok(&["export", p(&file)]).stdout);
    let lines: BTreeSet<&str> = out.lines().collect();
    assert_eq!(
        lines,
        BTreeSet::from(["a\tnew\t0\t0\t20\t0\t", "b\ty\t0\t0\t6\t0\t"])
    );
}

#[test]
fn info_and_dump_describe_the_file() {
    let loaded = loaded_file();
    let info = text(&k2htool_ok(&["info", p(&loaded.file)]).stdout);
    let tombstones = sample_records().iter().filter(|r| r.tombstone).count() as u64;
    let items = RECORDS + 1 - tombstones;
    assert!(info.contains(&format!("items: {items}\n")), "{info}");
    assert!(
        info.contains(&format!("tombstones: {tombstones}\n")),
        "{info}"
    );
    let dump = text(&k2htool_ok(&["dump", p(&loaded.file), "--limit", "5"]).stdout);
    assert_eq!(dump.lines().count(), 5, "{dump}");
    let all = text(&k2htool_ok(&["dump", p(&loaded.file), "--all"]).stdout);
    assert_eq!(all.lines().count() as u64, RECORDS + 1);
    assert!(all.contains("TOMBSTONE"));
    assert!(all.contains(&format!("key=marker value={}", text(MARKER_VALUE))));
}

#[test]
fn verify_passes_on_a_clean_file() {
    let loaded = loaded_file();
    let out = k2htool_ok(&["verify", p(&loaded.file)]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(!stdout.contains("PROBLEM"), "{stdout}");
}

#[test]
fn verify_fails_on_a_corrupted_record() {
    let loaded = loaded_file();
    let mut bytes = std::fs::read(&loaded.file).expect("read file");
    let at = bytes
        .windows(MARKER_VALUE.len())
        .position(|w| w == MARKER_VALUE)
        .expect("marker value stored verbatim in the file");
    // Flip bits inside the stored value: only a checksum can notice.
    for b in &mut bytes[at + 10..at + 20] {
        *b ^= 0x55;
    }
    std::fs::write(&loaded.file, &bytes).expect("write corrupted file");
    let out = k2htool(&["verify", p(&loaded.file)]);
    assert!(
        !out.status.success(),
        "verify passed a corrupted file:\n{}",
        text(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("PROBLEM"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn verify_fails_on_a_truncated_or_garbage_file() {
    let loaded = loaded_file();
    let bytes = std::fs::read(&loaded.file).expect("read file");
    std::fs::write(&loaded.file, &bytes[..bytes.len() / 3]).expect("truncate");
    let out = k2htool(&["verify", p(&loaded.file)]);
    assert!(!out.status.success(), "verify passed a truncated file");
    let garbage = loaded.dir.join("garbage.k2h");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024]).expect("write garbage");
    let out = k2htool(&["verify", p(&garbage)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("k2htool: error:"));
}

#[test]
fn compact_preserves_content() {
    let loaded = loaded_file();
    let compacted = loaded.dir.join("compacted.k2h");
    let out = k2htool_ok(&["compact", p(&loaded.file), p(&compacted)]);
    assert!(text(&out.stdout).contains("records copied"));
    k2htool_ok(&["verify", p(&compacted)]);
    let before = loaded.dir.join("before.txt");
    let after = loaded.dir.join("after.txt");
    k2htool_ok(&["export", p(&loaded.file), "-o", p(&before)]);
    k2htool_ok(&["export", p(&compacted), "-o", p(&after)]);
    assert_eq!(read_lines(&before), read_lines(&after));
    assert_eq!(read_lines(&after), loaded.lines);
    // Compact never overwrites an existing file.
    let out = k2htool(&["compact", p(&loaded.file), p(&compacted)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"));
}

#[test]
fn bench_prints_error_free_lines_for_every_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    for target in ["memory", "full", "index", "hashmap"] {
        for threads in ["1", "2"] {
            let out = k2htool_ok(&[
                "bench",
                "--target",
                target,
                "--n",
                "2000",
                "--value-bytes",
                "100",
                "--threads",
                threads,
                "--dir",
                p(dir.path()),
            ]);
            let stdout = text(&out.stdout);
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(lines.len(), 3, "{stdout}");
            for (line, phase) in lines.iter().zip(["set", "get", "size"]) {
                assert!(line.starts_with("BENCH "), "{line}");
                assert!(line.contains(&format!(" phase={phase}")), "{line}");
                assert!(line.contains(&format!(" threads={threads} ")), "{line}");
                if phase != "size" {
                    assert!(line.ends_with(" errors=0"), "{line}");
                }
            }
        }
    }
    // The benchmark removes its file.
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
}

#[test]
fn bench_keys_match_the_c_generator() {
    let out = text(&k2htool_ok(&["bench", "--print-keys", "3", "--seed", "42"]).stdout);
    assert_eq!(
        out,
        "V626vYiMXDEvZyOz4vS95DTc1ZSUOuSO8f4c\n\
         yPCSkoFW8GsNg8ofMEd12NFxxZpk-ine6eN2\n\
         V3XPLcHuFue3fpgz1U_mxW3pkc0-ClFF5gi0\n"
    );
}

#[test]
fn bad_arguments_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.k2h");

    let out = k2htool(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Usage"), "{}", text(&out.stderr));

    let out = k2htool(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unrecognized subcommand"));

    for cmd in ["info", "dump", "export", "verify"] {
        let out = k2htool(&[cmd, p(&missing)]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("no such file"), "{cmd}: {stderr}");
        assert!(stderr.contains("missing.k2h"), "{cmd}: {stderr}");
    }

    let out = k2htool(&["info", p(&missing), "--mode", "sideways"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("possible values"));

    // A malformed line names its number and what is wrong; earlier lines stay stored.
    let input = dir.path().join("bad.txt");
    std::fs::write(&input, b"good\tv\t0\t0\t1\t0\t\nbad\tv\t0\n").expect("write input");
    let file = dir.path().join("data.k2h");
    let out = k2htool(&["load", p(&file), "-i", p(&input)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(
        stderr.contains("expected 7 TAB-separated fields"),
        "{stderr}"
    );
    let export = text(&k2htool_ok(&["export", p(&file)]).stdout);
    assert_eq!(export, "good\tv\t0\t0\t1\t0\t\n");

    let out = k2htool(&["bench", "--threads", "0", "--n", "10"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--threads"));
}

#[test]
fn every_subcommand_has_help() {
    for cmd in [
        "info", "dump", "verify", "compact", "export", "load", "bench",
    ] {
        let out = k2htool_ok(&[cmd, "--help"]);
        assert!(text(&out.stdout).contains("Usage: k2htool"), "{cmd}");
    }
    let help = text(&k2htool_ok(&["export", "--help"]).stdout);
    assert!(help.contains("TOMBSTONE"), "{help}");
    assert!(help.contains("\\xHH"), "{help}");
}
