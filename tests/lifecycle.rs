//! File lifecycle against the running daemon: truncation, rotation, deletion
//! while reading, inode reuse, identical first lines, a file shorter than the
//! fingerprint that grows, an empty file, a symlinked folder and a file without
//! read permission. Each case writes its own session, so each is checked to
//! the token.
//!
//! As root the daemon runs as `nobody`, so that a mode-000 file really is
//! unreadable to it.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Expected (input, output, messages) per session.
#[derive(Default)]
struct Truth(BTreeMap<String, (u64, u64, u64)>);

impl Truth {
    fn add(&mut self, session: &str, input: u64, output: u64) {
        let e = self.0.entry(session.to_string()).or_default();
        e.0 += input;
        e.1 += output;
        e.2 += 1;
    }
    /// Lines for `n` new messages of `session`, recorded as truth.
    fn lines(&mut self, session: &str, from: usize, n: usize) -> String {
        (from..from + n)
            .map(|i| {
                self.add(session, i as u64 + 1, 10 * (i as u64 + 1));
                usage_line(session, i, i as u64 + 1, 10 * (i as u64 + 1))
            })
            .collect()
    }
}

fn by_session(ch: &TestClickHouse) -> BTreeMap<String, (u64, u64, u64)> {
    ch.totals_by("tb_life", "session_id")
        .into_iter()
        .map(|(k, t)| (k, (t.input_tokens, t.output_tokens, t.messages)))
        .collect()
}

fn start(cfg: &Path, log: &Path) -> Daemon {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = bin_unprivileged(cfg.parent().unwrap());
    cmd.arg("run")
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(f);
    Daemon {
        child: cmd.spawn().unwrap(),
        log: log.to_path_buf(),
    }
}

#[test]
fn file_lifecycle_cases_are_exact() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let watch = work.path().join("claude/projects/p");
    let outside = work.path().join("outside");
    let mut truth = Truth::default();

    // Before the daemon starts.
    write(&watch.join("empty.jsonl"), "");
    write(&watch.join("short.jsonl"), &truth.lines("short", 0, 1));
    let twin_first = usage_line("twin", "shared", 5, 50);
    truth.add("twin", 5, 50);
    write(
        &watch.join("twin-a.jsonl"),
        &format!("{twin_first}{}", truth.lines("twin", 0, 3)),
    );
    write(
        &watch.join("twin-b.jsonl"),
        &format!("{twin_first}{}", truth.lines("twin", 3, 3)),
    );
    write(&outside.join("linked.jsonl"), &truth.lines("link", 0, 4));
    std::os::unix::fs::symlink(&outside, watch.join("linked")).unwrap();
    write(&watch.join("noperm.jsonl"), &truth.lines("noperm", 0, 3));
    std::fs::set_permissions(
        watch.join("noperm.jsonl"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    write(&watch.join("trunc.jsonl"), &truth.lines("trunc", 0, 5));
    write(&watch.join("rot.jsonl"), &truth.lines("rot", 0, 3));
    write(&watch.join("reuse.jsonl"), &truth.lines("reuse", 0, 2));
    // Big enough to still be reading when it is deleted.
    write(
        &watch.join("big-del.jsonl"),
        &truth.lines("bigdel", 0, 60_000),
    );

    let cfg = write_config_with(
        work.path(),
        &ch,
        "tb_life",
        &[&work.path().join("claude")],
        "read_chunk_bytes = 65536",
        "[batch]\nmax_rows = 200\nchannel_capacity = 1\n",
    );
    let log = work.path().join("daemon.log");
    let d = start(&cfg, &log);

    // Deleted while being read: the open handle is read to the end.
    assert!(
        wait_until(Duration::from_secs(60), || by_session(&ch)
            .get("bigdel")
            .is_some_and(|t| t.2 > 0)),
        "nothing ingested:\n{}",
        d.log_text()
    );
    let partial = by_session(&ch)["bigdel"].2;
    std::fs::remove_file(watch.join("big-del.jsonl")).unwrap();
    assert!(partial < 60_000, "big file finished before it was deleted");

    let settled = |want: &[&str], truth: &Truth| {
        wait_until(Duration::from_secs(60), || {
            let got = by_session(&ch);
            want.iter().all(|s| got.get(*s) == truth.0.get(*s))
        })
    };
    assert!(
        settled(
            &["short", "twin", "link", "trunc", "rot", "reuse", "bigdel"],
            &truth
        ),
        "{:?}",
        by_session(&ch)
    );
    assert!(
        !by_session(&ch).contains_key("noperm"),
        "unreadable file was read"
    );
    assert!(
        d.log_text().contains("\"file_unreadable\""),
        "no file_unreadable event"
    );

    // Empty file gets lines; short file grows past the fingerprint length.
    append(&watch.join("empty.jsonl"), truth.lines("empty", 0, 2));
    append(&watch.join("short.jsonl"), truth.lines("short", 1, 20));
    // Truncated in place and rewritten shorter.
    std::fs::write(watch.join("trunc.jsonl"), truth.lines("trunc", 5, 2)).unwrap();
    // Rotated: renamed, more lines through the old name's file, new file at the path.
    std::fs::rename(watch.join("rot.jsonl"), watch.join("rot-old.jsonl")).unwrap();
    append(&watch.join("rot-old.jsonl"), truth.lines("rot", 3, 1));
    write(&watch.join("rot.jsonl"), &truth.lines("rot", 4, 2));
    // Deleted and a new file created, which likely reuses the inode.
    let old_ino = std::fs::metadata(watch.join("reuse.jsonl")).unwrap().ino();
    std::fs::remove_file(watch.join("reuse.jsonl")).unwrap();
    write(&watch.join("reuse2.jsonl"), &truth.lines("reuse", 2, 3));
    let new_ino = std::fs::metadata(watch.join("reuse2.jsonl")).unwrap().ino();
    println!("inode reused while running: {}", old_ino == new_ino);
    // The unreadable file becomes readable.
    std::fs::set_permissions(
        watch.join("noperm.jsonl"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let all: Vec<&str> = vec![
        "short", "twin", "link", "trunc", "rot", "reuse", "bigdel", "empty", "noperm",
    ];
    assert!(
        settled(&all, &truth),
        "got {:?}\nwant {:?}",
        by_session(&ch),
        truth.0
    );
    // The rotated file kept its position: renamed, not rediscovered and re-read.
    let ev = d.events();
    assert!(ev.iter().any(|e| e["event"] == "file_renamed"
        && e["to"]
            .as_str()
            .is_some_and(|t| t.ends_with("rot-old.jsonl"))));
    assert!(!ev.iter().any(|e| e["event"] == "file_discovered"
        && e["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("rot-old.jsonl"))));
    assert!(d.stop().success());

    // Inode reuse across a restart: the checkpoint of the old file must not
    // be applied to the new one.
    let old_ino = std::fs::metadata(watch.join("reuse2.jsonl")).unwrap().ino();
    std::fs::remove_file(watch.join("reuse2.jsonl")).unwrap();
    write(&watch.join("reuse3.jsonl"), &truth.lines("reuse", 5, 1));
    let new_ino = std::fs::metadata(watch.join("reuse3.jsonl")).unwrap().ino();
    println!("inode reused across restart: {}", old_ino == new_ino);
    let d = start(&cfg, &log);
    assert!(
        settled(&all, &truth),
        "got {:?}\nwant {:?}",
        by_session(&ch),
        truth.0
    );
    assert_eq!(ch.duplicate_rows("tb_life"), 0);
    assert!(d.stop().success());
}

#[test]
fn full_or_read_only_state_dir_loses_no_checkpoint() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    if !mounted.success() {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(state.clone());
    let watch = work.path().join("claude/projects/p");
    let mut truth = Truth::default();
    write(&watch.join("a.jsonl"), &truth.lines("sd", 0, 10));
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_state",
        &[&work.path().join("claude")],
        "",
    );
    let log = work.path().join("daemon.log");
    let d = Daemon::start(&cfg, &log);
    let messages = |ch: &TestClickHouse| ch.totals("tb_state").messages;
    assert!(wait_until(Duration::from_secs(30), || messages(&ch) == 10));
    // The rows land before their checkpoint is saved: wait for the save.
    assert!(wait_until(Duration::from_secs(30), || state
        .join("checkpoints.json")
        .exists()));

    // Disk full: inserts go on, checkpoints wait in memory.
    let filler = state.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    drop(f);
    append(&watch.join("a.jsonl"), truth.lines("sd", 10, 10));
    // A malformed line cannot be dead-lettered either; that is logged too.
    append(&watch.join("a.jsonl"), "{\"broken\n");
    assert!(wait_until(Duration::from_secs(30), || messages(&ch) == 20));
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("\"checkpoint_save_failed\"")));
    let ev = d.events();
    assert!(ev
        .iter()
        .any(|e| e["event"] == "checkpoint_save_failed" && e["error"].is_string()));
    assert!(ev.iter().any(|e| e["event"] == "dead_letter_write_failed"
        && e["file"].is_string()
        && e["error"].is_string()));
    let cp_full = std::fs::read_to_string(state.join("checkpoints.json")).unwrap();

    // Space again: the next commit saves everything.
    std::fs::remove_file(&filler).unwrap();
    append(&watch.join("a.jsonl"), truth.lines("sd", 20, 5));
    assert!(wait_until(Duration::from_secs(30), || messages(&ch) == 25));
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("\"checkpoint_recovered\"")));
    let size = std::fs::metadata(watch.join("a.jsonl")).unwrap().len();
    assert!(std::fs::read_to_string(state.join("checkpoints.json"))
        .unwrap()
        .contains(&format!("\"offset\":{size}")));
    assert_ne!(
        cp_full,
        std::fs::read_to_string(state.join("checkpoints.json")).unwrap()
    );

    // Read-only: the same, and nothing goes backwards.
    assert!(std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&state)
        .status()
        .unwrap()
        .success());
    append(&watch.join("a.jsonl"), truth.lines("sd", 25, 5));
    assert!(wait_until(Duration::from_secs(30), || messages(&ch) == 30));
    assert!(std::process::Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&state)
        .status()
        .unwrap()
        .success());
    append(&watch.join("a.jsonl"), truth.lines("sd", 30, 5));
    assert!(wait_until(Duration::from_secs(30), || messages(&ch) == 35));
    assert!(d.stop().success());
    let size = std::fs::metadata(watch.join("a.jsonl")).unwrap().len();
    assert!(std::fs::read_to_string(state.join("checkpoints.json"))
        .unwrap()
        .contains(&format!("\"offset\":{size}")));
    let t = ch.totals("tb_state");
    assert_eq!((t.input_tokens, t.output_tokens, t.messages), {
        let s = &truth.0["sd"];
        (s.0, s.1, s.2)
    });
    // Nothing is left to read after a restart.
    let again = backfill(&cfg, &[]);
    assert_eq!(again["bytes"], 0);
}
