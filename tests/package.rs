//! The Debian package (`scripts/package-deb.sh`), installed for real with
//! `dpkg` (the tests run as root): its files are where the units expect
//! them, `systemd-analyze verify` accepts the installed units, the service
//! user and its folders exist, the installed config loads, nothing is
//! started, and removing (even purging) the package leaves the data folders
//! and what they hold in place.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gid_of(group: &str) -> u32 {
    run(Command::new("getent").args(["group", group]))
        .split(':')
        .nth(2)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_package_installs_verifies_and_leaves_data_on_removal() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "installing a package needs root (CI runs the suite as root)"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deb = run(Command::new(repo.join("scripts/package-deb.sh"))
        .env("TOKENBRIDGE_BIN", env!("CARGO_BIN_EXE_tokenbridge")));
    let deb = repo.join(deb.trim());
    assert!(deb.exists(), "{}", deb.display());

    run(Command::new("dpkg").arg("-i").arg(&deb));
    for f in [
        "/usr/bin/tokenbridge",
        "/lib/systemd/system/tokenbridge.service",
        "/usr/lib/systemd/user/tokenbridge.service",
        "/usr/lib/sysusers.d/tokenbridge.conf",
        "/usr/lib/tmpfiles.d/tokenbridge.conf",
        "/etc/tokenbridge/config.toml",
    ] {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    // The unit runs the installed binary with the installed config.
    let unit = std::fs::read_to_string("/lib/systemd/system/tokenbridge.service").unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/tokenbridge run --config /etc/tokenbridge/config.toml")
    );
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg("/lib/systemd/system/tokenbridge.service"));
    // The service user and its folders.
    run(Command::new("getent").args(["passwd", "tokenbridge"]));
    let group = gid_of("tokenbridge");
    let spool = std::fs::metadata("/var/spool/tokenbridge").unwrap();
    assert_eq!((spool.mode() & 0o777, spool.gid()), (0o750, group));
    let state = std::fs::metadata("/var/lib/tokenbridge").unwrap();
    assert_eq!(state.mode() & 0o777, 0o700);
    let config = std::fs::metadata("/etc/tokenbridge/config.toml").unwrap();
    assert_eq!(
        (config.permissions().mode() & 0o777, config.gid()),
        (0o640, group)
    );
    // The installed config is valid as shipped.
    let c = tokenbridge::config::Config::load(Path::new("/etc/tokenbridge/config.toml")).unwrap();
    assert_eq!(c.watch.dirs, [Path::new("/var/spool/tokenbridge")]);
    // Installing started nothing: no process runs as the service user.
    let uid: u32 = run(Command::new("getent").args(["passwd", "tokenbridge"]))
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let running = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("status")).ok())
        .any(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                == Some(uid)
        });
    assert!(!running, "a process of the service user runs");

    // Removal, then purge, keep the data.
    std::fs::write("/var/lib/tokenbridge/checkpoints.keep", b"x").unwrap();
    std::fs::write("/var/spool/tokenbridge/drop.jsonl", b"{}\n").unwrap();
    run(Command::new("dpkg").args(["-r", "tokenbridge"]));
    assert!(!Path::new("/usr/bin/tokenbridge").exists());
    assert!(
        Path::new("/etc/tokenbridge/config.toml").exists(),
        "remove keeps the conffile"
    );
    run(Command::new("dpkg").args(["-P", "tokenbridge"]));
    assert!(
        !Path::new("/etc/tokenbridge/config.toml").exists(),
        "purge removes the conffile"
    );
    assert!(Path::new("/var/lib/tokenbridge/checkpoints.keep").exists());
    assert!(Path::new("/var/spool/tokenbridge/drop.jsonl").exists());
    let _ = std::fs::remove_file("/var/lib/tokenbridge/checkpoints.keep");
    let _ = std::fs::remove_file("/var/spool/tokenbridge/drop.jsonl");
}
