//! Key files: one base64 cluster key per file in the key folder (mode 0600),
//! and the master's private key.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sustenet_proto::{Key, MasterKeypair};

use crate::error::ServerError;

/// File name of the master's private key inside the key folder.
pub const MASTER_KEY_FILE: &str = "master.key";
/// File name of the master's public key inside the key folder.
pub const MASTER_PUB_FILE: &str = "master.pub";

/// Writes `contents` to `path` readable by the owner only. Refuses to
/// replace an existing file unless `overwrite`.
pub fn write_secret_file(path: &Path, contents: &str, overwrite: bool) -> Result<(), ServerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .map_err(|e| ServerError::key(dir, format!("cannot create folder: {e}")))?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ServerError::key(path, "already exists (pass --force to replace it)")
        } else {
            ServerError::key(path, format!("cannot write: {e}"))
        }
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| ServerError::key(path, format!("cannot set mode 0600: {e}")))?;
    }
    f.write_all(contents.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .map_err(|e| ServerError::key(path, format!("cannot write: {e}")))
}

fn warn_if_open(path: &Path) {
    // Windows has no mode bits to check; its ACLs are the operator's to set.
    #[cfg(not(unix))]
    let _ = path;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "key file is readable by other users; run chmod 600 on it");
            }
        }
    }
}

/// Reads one base64 cluster key.
pub fn load_key(path: &Path) -> Result<Key, ServerError> {
    let text = fs::read_to_string(path)
        .map_err(|e| ServerError::key(path, format!("cannot read: {e}")))?;
    warn_if_open(path);
    Key::from_base64(&text).map_err(|e| ServerError::key(path, e.to_string()))
}

/// Path of a cluster key by name.
pub fn cluster_key_path(key_dir: &Path, key_name: &str) -> PathBuf {
    key_dir.join(key_name)
}

/// Every cluster key in a folder, by file name. Files that are not keys
/// (the master's own files, anything that does not parse) are skipped with a
/// warning naming them.
pub fn load_key_dir(dir: &Path) -> Result<HashMap<String, Key>, ServerError> {
    let entries = fs::read_dir(dir)
        .map_err(|e| ServerError::key(dir, format!("cannot read key folder: {e}")))?;
    let mut keys = HashMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if never_a_key(&name) || !path.is_file() {
            continue;
        }
        match load_key(&path) {
            Ok(k) => {
                keys.insert(name, k);
            }
            Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
        }
    }
    Ok(keys)
}

/// File names in a key folder that are never a cluster, agent or admin key:
/// the master's own files, hidden files, and public keys (`*.pub`, such as a
/// master key pair's public half made beside its private key): a public key
/// read as a shared key would let anyone who has it in.
fn never_a_key(name: &str) -> bool {
    name == MASTER_KEY_FILE
        || name == MASTER_PUB_FILE
        || name.starts_with('.')
        || name.ends_with(".pub")
}

/// The folder inside the key folder that holds agent keys (one file per key, as cluster keys).
pub const AGENT_KEY_DIR: &str = "agents";
/// The folder inside the key folder that holds admin keys (`sustenet instances`).
pub const ADMIN_KEY_DIR: &str = "admin";

/// The key file `name` in `dir` as it is now, or `None` when `name` is not a
/// plain file name (empty, over 255 bytes, starting with `.`, or with a
/// character other than `A-Z a-z 0-9 - _ .`), names the master's own files,
/// or the file is missing or not a key. Read at each connection attempt of
/// an agent or admin tool, so the folder can change while the master runs.
pub fn read_named_key(dir: &Path, name: &str) -> Option<Key> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !plain || never_a_key(name) {
        return None;
    }
    let path = dir.join(name);
    if !path.is_file() {
        return None;
    }
    load_key(&path).map_err(|e| tracing::warn!("{e}")).ok()
}

/// Every key in a folder, as [`load_key_dir`]; an empty set when the folder does not exist.
pub fn load_optional_key_dir(dir: &Path) -> Result<HashMap<String, Key>, ServerError> {
    if !dir.exists() {
        return Ok(HashMap::new());
    }
    load_key_dir(dir)
}

/// Loads the master keypair from its private key file.
pub fn load_master_keypair(path: &Path) -> Result<MasterKeypair, ServerError> {
    let text = fs::read_to_string(path).map_err(|e| {
        ServerError::key(
            path,
            format!("cannot read the master key ({e}); create one with `sustenet keygen --master`"),
        )
    })?;
    warn_if_open(path);
    MasterKeypair::from_private_base64(&text).map_err(|e| ServerError::key(path, e.to_string()))
}

/// Creates a new master keypair in `dir` (private key mode 0600, public key
/// beside it) and returns it.
pub fn create_master_keypair(dir: &Path, overwrite: bool) -> Result<MasterKeypair, ServerError> {
    create_master_keypair_at(&dir.join(MASTER_KEY_FILE), overwrite)
}

/// Creates a new master keypair with its private key in the file `path`
/// (mode 0600) and its public key beside it, named as `path` with the
/// extension `.pub` (`master.key` → `master.pub`), and returns it.
pub fn create_master_keypair_at(
    path: &Path,
    overwrite: bool,
) -> Result<MasterKeypair, ServerError> {
    let kp = MasterKeypair::generate().map_err(|e| ServerError::key(path, e.to_string()))?;
    write_secret_file(path, &kp.private_base64(), overwrite)?;
    let pub_path = path.with_extension("pub");
    fs::write(&pub_path, format!("{}\n", kp.public().to_base64()))
        .map_err(|e| ServerError::key(&pub_path, format!("cannot write: {e}")))?;
    Ok(kp)
}

/// Creates a new random cluster key file and returns the key.
pub fn create_cluster_key(dir: &Path, name: &str, overwrite: bool) -> Result<Key, ServerError> {
    let key = Key::generate(&mut rand::rng());
    write_secret_file(&cluster_key_path(dir, name), &key.to_base64(), overwrite)?;
    Ok(key)
}

/// The master keypair in `dir`, created on first use.
pub fn ensure_master_keypair(dir: &Path) -> Result<MasterKeypair, ServerError> {
    let path = dir.join(MASTER_KEY_FILE);
    if path.exists() {
        load_master_keypair(&path)
    } else {
        create_master_keypair(dir, false)
    }
}

/// The cluster key `name` in `dir`, created on first use.
pub fn ensure_cluster_key(dir: &Path, name: &str) -> Result<Key, ServerError> {
    let path = cluster_key_path(dir, name);
    if path.exists() {
        load_key(&path)
    } else {
        create_cluster_key(dir, name, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let k = create_cluster_key(dir.path(), "alpha", false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("alpha"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load_key(&dir.path().join("alpha")).unwrap(), k);
        assert!(create_cluster_key(dir.path(), "alpha", false).is_err());
        let kp = ensure_master_keypair(dir.path()).unwrap();
        let again = ensure_master_keypair(dir.path()).unwrap();
        assert_eq!(kp.public(), again.public());
        fs::write(dir.path().join("junk"), "not a key").unwrap();
        let all = load_key_dir(dir.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert!(all.contains_key("alpha"));
    }

    #[test]
    fn a_master_keypair_made_at_a_path_is_that_file_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my_master.key");
        let kp = create_master_keypair_at(&path, false).unwrap();
        assert_eq!(load_master_keypair(&path).unwrap().public(), kp.public());
        let public = fs::read_to_string(dir.path().join("my_master.pub")).unwrap();
        assert_eq!(public.trim(), kp.public().to_base64());
        assert!(!dir.path().join(MASTER_KEY_FILE).exists());
        // Its public half is never read as a cluster key (anyone may have it).
        assert!(
            !load_key_dir(dir.path())
                .unwrap()
                .contains_key("my_master.pub")
        );
        assert!(read_named_key(dir.path(), "my_master.pub").is_none());
        // Made once: a second time without overwrite is refused.
        assert!(create_master_keypair_at(&path, false).is_err());
    }
}
