//! The file-system steps that make the service's writes crash-safe: atomic
//! replacement (temp file, fsync, rename, fsync of the directory) and
//! directories whose creation is itself durable. Everything is created
//! owner-only (files 0600, directories 0700): the data dir holds private keys.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Prefix and suffix of the temp files of [`write_atomically`]: a name no
/// key or log file has (kids start with a letter or digit), so loaders skip
/// them and [`remove_temp_files`] finds them.
const TEMP_PREFIX: &str = ".";
const TEMP_SUFFIX: &str = ".tmp";

/// Creates `dir` (and missing parents) owner-only, and makes the new entries
/// durable by syncing each parent that gained one.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(error) => return Err(error),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` so that after a crash at any point the
/// file is either the old one (or absent) or the new one, never a mix: the
/// bytes go to a temp file that is synced before it is renamed over the
/// name, and the directory is synced after. Mode 0600.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temp = dir.join(format!("{TEMP_PREFIX}{name}{TEMP_SUFFIX}"));
    // A temp file left by a crash is garbage; create_new below must not
    // inherit its mode.
    match fs::remove_file(&temp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, dir.join(name))?;
    sync_dir(dir)
}

/// Whether a directory entry is a temp file of [`write_atomically`].
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// Removes `dir/name` durably (no-op if it is gone already).
pub fn remove_durably(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => sync_dir(dir),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_and_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        ensure_dir(&nested).unwrap();
        ensure_dir(&nested).unwrap();
        let mode = fs::metadata(&nested).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A stale temp file from a crash does not get in the way.
        fs::write(nested.join(".f.tmp"), b"garbage").unwrap();
        write_atomically(&nested, "f", b"one").unwrap();
        write_atomically(&nested, "f", b"two").unwrap();
        assert_eq!(fs::read(nested.join("f")).unwrap(), b"two");
        let mode = fs::metadata(nested.join("f")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!nested.join(".f.tmp").exists());
        assert!(is_temp_file(".f.tmp") && !is_temp_file("f") && !is_temp_file("k1.pem"));
        remove_durably(&nested, "f").unwrap();
        remove_durably(&nested, "f").unwrap();
        assert!(!nested.join("f").exists());
    }
}
