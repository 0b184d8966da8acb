//! `web_users_filename`: who may use the viewer.
//!
//! One user a line, `name:argon2 hash:role:local id patterns`; `#` starts a
//! comment. The role is `admin` (may read the audit log) or `viewer`. The
//! patterns are a comma-separated list of local ids where `*` stands for any
//! text and `?` for one character (`*` alone: every id); ids are compared
//! without regard to case.

use std::io::Write;
use std::path::Path;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    hash: String,
    pub admin: bool,
    /// Local id patterns, lower-cased.
    pub ids: Vec<String>,
}

impl User {
    pub fn may_see(&self, local_id: &str) -> bool {
        let id = local_id.to_lowercase();
        self.ids.iter().any(|p| glob(p.as_bytes(), id.as_bytes()))
    }

    /// The local id patterns the user is limited to; none for every id.
    pub fn limits(&self) -> &[String] {
        if self.ids.iter().any(|p| p == "*") {
            &[]
        } else {
            &self.ids
        }
    }

    pub fn verify(&self, password: &str) -> bool {
        PasswordHash::new(&self.hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    }

    fn line(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.name,
            self.hash,
            if self.admin { "admin" } else { "viewer" },
            self.ids.join(",")
        )
    }
}

/// `*` and `?` wildcards, in at most (pattern length × id length) steps: a
/// mismatch goes back only to the last `*` (an id from the network must not
/// make a pattern with many stars take exponential time).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == b'?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// A user name may not hold the file's separators.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

pub fn parse(path: &Path, text: &str) -> anyhow::Result<Vec<User>> {
    let mut users = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let fields: Vec<&str> = line.split(':').collect();
        let [name, hash, role, ids] = fields[..] else {
            anyhow::bail!("{}: expected name:hash:role:ids", at());
        };
        if !valid_name(name) {
            anyhow::bail!("{}: bad user name {name:?}", at());
        }
        PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("{}: bad hash: {e}", at()))?;
        let admin = match role {
            "admin" => true,
            "viewer" => false,
            _ => anyhow::bail!("{}: role {role:?} is neither admin nor viewer", at()),
        };
        users.push(User {
            name: name.to_string(),
            hash: hash.to_string(),
            admin,
            ids: split_ids(ids),
        });
    }
    Ok(users)
}

fn split_ids(ids: &str) -> Vec<String> {
    ids.split(',')
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect()
}

pub fn load(path: &Path) -> anyhow::Result<Vec<User>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    parse(path, &text)
}

/// What `imspector-web passwd` changes besides the password.
pub struct Change {
    pub admin: Option<bool>,
    pub ids: Option<String>,
}

/// Add `name` or give it a new password (and role or ids when given); the
/// file is replaced whole, readable by its owner only.
pub fn set_password(path: &Path, name: &str, password: &str, change: Change) -> anyhow::Result<()> {
    if !valid_name(name) {
        anyhow::bail!("bad user name {name:?}: letters, digits and . _ - @ only");
    }
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    let mut users = if path.exists() {
        load(path)?
    } else {
        Vec::new()
    };
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string();
    match users.iter_mut().find(|u| u.name == name) {
        Some(user) => {
            user.hash = hash;
            if let Some(admin) = change.admin {
                user.admin = admin;
            }
            if let Some(ids) = &change.ids {
                user.ids = split_ids(ids);
            }
        }
        None => users.push(User {
            name: name.to_string(),
            hash,
            admin: change.admin.unwrap_or(false),
            ids: split_ids(change.ids.as_deref().unwrap_or("*")),
        }),
    }
    let mut text =
        String::from("# imspector-web users: name:argon2 hash:admin|viewer:local id patterns\n");
    for u in &users {
        text.push_str(&u.line());
        text.push('\n');
    }
    let tmp = path.with_extension("new");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"class7-*", b"class7-ann"));
        assert!(!glob(b"class7-*", b"class8-bob"));
        assert!(glob(b"b?b", b"bob"));
        assert!(!glob(b"bob", b"bobby"));
        assert!(!glob(b"bobby", b"bob"));
        assert!(glob(b"*a*b", b"xxaxxab"));
        assert!(!glob(b"*a*b", b"xxaxxa"));
        assert!(glob(b"?*?", b"ab") && !glob(b"?*?", b"a"));
        assert!(glob(b"a**", b"a") && glob(b"", b"") && !glob(b"", b"a"));
        // Many stars against a long id that almost matches: answered at
        // once (the recursive matcher took exponential time here).
        let id = "a".repeat(4000);
        assert!(!glob(
            format!("{}b", "*a".repeat(30)).as_bytes(),
            id.as_bytes()
        ));
    }

    #[test]
    fn passwd_adds_and_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let add = |ids: Option<&str>| Change {
            admin: None,
            ids: ids.map(str::to_string),
        };
        set_password(&path, "teacher", "s3cret", add(Some("Class7-*"))).unwrap();
        set_password(&path, "root", "pw", add(None)).unwrap();
        set_password(&path, "teacher", "new", add(None)).unwrap();
        let users = load(&path).unwrap();
        assert_eq!(users.len(), 2);
        let t = &users[0];
        assert!(t.verify("new") && !t.verify("s3cret"));
        assert!(t.may_see("class7-ann") && !t.may_see("bob"));
        assert!(users[1].may_see("bob"));
        assert!(set_password(&path, "a:b", "pw", add(None)).is_err());
    }
}
