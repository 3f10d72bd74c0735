//! Which host and which person a transcript file's rows belong to.
//!
//! On a developer's machine: the host is `[source] host` (default: the
//! machine's hostname) and the user is `[source] user`, else the owner of the
//! file (uid → name), else the login name. On a central daemon that receives
//! drops from many hosts (`[watch] host_dirs = true`), the first folder under
//! a watched folder names the host (`/var/spool/tokenbridge/<host>/…`), and
//! with `host_user_dirs = true` the second names the user
//! (`…/<host>/<user>/…`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Where host and user come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Layout {
    /// Every file is this machine's.
    #[default]
    Local,
    /// The first folder under a watched folder names the host.
    HostDirs,
    /// The first folder names the host, the second the user.
    HostUserDirs,
}

/// How rows are attributed (from `[source]` and `[watch]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// This machine's name (`[source] host`, default the hostname).
    pub host: String,
    /// A fixed user (`[source] user`); `None`: each file's owner.
    pub user: Option<String>,
    /// Where host and user come from.
    pub layout: Layout,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            host: hostname(),
            user: None,
            layout: Layout::Local,
        }
    }
}

/// Attributes files to hosts and users; remembers uid → name lookups.
#[derive(Debug, Default)]
pub struct Attributor {
    policy: Policy,
    names: Mutex<HashMap<u32, Arc<str>>>,
    host: Option<Arc<str>>,
}

impl Attributor {
    /// An attributor for `policy`.
    pub fn new(policy: Policy) -> Attributor {
        Attributor {
            host: Some(Arc::from(policy.host.as_str())),
            policy,
            names: Mutex::new(HashMap::new()),
        }
    }

    /// The host and user of `path`, found under the watched folder `root`,
    /// owned by `uid`.
    pub fn of(&self, root: &Path, path: &Path, uid: u32) -> (Arc<str>, Arc<str>) {
        let under: Vec<String> = path
            .strip_prefix(root)
            .unwrap_or(path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        // The file itself is never a host or user folder.
        let folder = |i: usize| under.get(i).filter(|_| i + 1 < under.len()).cloned();
        let local_host = || {
            self.host
                .clone()
                .unwrap_or_else(|| Arc::from(self.policy.host.as_str()))
        };
        let local_user = || match &self.policy.user {
            Some(u) => Arc::from(u.as_str()),
            None => self.user_of(uid),
        };
        match self.policy.layout {
            Layout::Local => (local_host(), local_user()),
            Layout::HostDirs => (
                folder(0).map_or_else(local_host, |h| Arc::from(h.as_str())),
                local_user(),
            ),
            Layout::HostUserDirs => (
                folder(0).map_or_else(local_host, |h| Arc::from(h.as_str())),
                folder(1).map_or_else(local_user, |u| Arc::from(u.as_str())),
            ),
        }
    }

    /// The name of `uid` (cached), else the login name, else the number.
    fn user_of(&self, uid: u32) -> Arc<str> {
        let mut names = self.names.lock().expect("names");
        names
            .entry(uid)
            .or_insert_with(|| {
                Arc::from(
                    user_name(uid)
                        .or_else(login_name)
                        .unwrap_or_else(|| uid.to_string())
                        .as_str(),
                )
            })
            .clone()
    }
}

/// The machine's hostname (`gethostname`), `localhost` if it has none.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is
    // NUL-terminated when it fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// The account name of `uid` from the password database.
fn user_name(uid: u32) -> Option<String> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getpwuid_r writes the
    // strings into `buf` and sets `result` to `&pwd` on success.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
}

/// The login name of the running process (`USER`, `LOGNAME`).
fn login_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(layout: Layout, user: Option<&str>) -> Policy {
        Policy {
            host: "dev-1".into(),
            user: user.map(str::to_string),
            layout,
        }
    }

    #[test]
    fn local_files_are_this_hosts_and_their_owners() {
        let a = Attributor::new(policy(Layout::Local, None));
        let (h, u) = a.of(
            Path::new("/home/x/.claude"),
            Path::new("/home/x/.claude/projects/p/s.jsonl"),
            0,
        );
        assert_eq!((&*h, &*u), ("dev-1", "root"));
        let a = Attributor::new(policy(Layout::Local, Some("ana")));
        assert_eq!(&*a.of(Path::new("/r"), Path::new("/r/s.jsonl"), 0).1, "ana");
    }

    #[test]
    fn spool_folders_name_host_and_user() {
        let spool = Path::new("/var/spool/tokenbridge");
        let a = Attributor::new(policy(Layout::HostDirs, Some("ops")));
        let f = spool.join("laptop-7/projects/p/s.jsonl");
        assert_eq!(
            a.of(spool, &f, 0),
            (Arc::from("laptop-7"), Arc::from("ops"))
        );
        let a = Attributor::new(policy(Layout::HostUserDirs, None));
        let f = spool.join("laptop-7/ana/projects/p/s.jsonl");
        assert_eq!(
            a.of(spool, &f, 0),
            (Arc::from("laptop-7"), Arc::from("ana"))
        );
        // A file directly in the spool has no host folder: this host's.
        assert_eq!(&*a.of(spool, &spool.join("s.jsonl"), 0).0, "dev-1");
    }

    #[test]
    fn hostname_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
