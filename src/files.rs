//! Files the service creates hold secrets or users' data (the SQLite database with the
//! generated JWT key, event exports), so they are created owner-only: `0600`, whatever the
//! process umask (a mode passed to `open` can only lose bits to the umask, never gain them).
//!
//! SQLite creates a database's `-wal`, `-shm` and `-journal` files with the database file's own
//! permissions, so [`prepare_sqlite`] creating the database file `0600` before SQLite opens it
//! covers them too. A database file left group- or world-readable by an earlier version is
//! tightened once, with a warning.

use std::{
    fs::{File, OpenOptions, Permissions},
    io,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// Mode of every file the service creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates (or truncates) `path` for writing, readable and writable by the owner only. An
/// existing file is tightened to `0600` as well: what is written now may be private.
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// The database file of an SQLite URL, `None` for in-memory databases.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    let opts = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let name = opts.get_filename();
    let memory = url.contains(":memory:")
        || url.contains("mode=memory")
        || name.to_string_lossy().starts_with("file:sqlx-in-memory");
    (!memory).then(|| name.to_path_buf())
}

/// The database file of an SQLite URL and the journal files SQLite keeps beside it (`-wal`,
/// `-shm`, `-journal`); empty for in-memory databases and other stores.
pub fn sqlite_files(url: &str) -> Vec<PathBuf> {
    if !url.starts_with("sqlite:") {
        return Vec::new();
    }
    sqlite_file(url)
        .map(|p| with_journals(&p))
        .unwrap_or_default()
}

fn with_journals(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

/// Before SQLite opens the database of `url`: creates the file `0600` when it is missing and
/// the URL lets SQLite create it (`create`), and tightens an existing file of ours (and its
/// `-wal`/`-shm`) that others may read. Errors are left to SQLite's own open, which reports
/// them with the URL.
pub fn prepare_sqlite(url: &str, create: bool) {
    let Some(path) = sqlite_file(url) else {
        return;
    };
    if create {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            // An empty file is an empty SQLite database. The mode is set again because a
            // strange umask (0277) could have taken the owner's write bit.
            Ok(file) => {
                let _ = file.set_permissions(Permissions::from_mode(FILE_MODE));
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => return,
        }
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    for file in with_journals(&path) {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.mode() & 0o777;
        if meta.is_file() && meta.uid() == uid && mode & 0o077 != 0 {
            match std::fs::set_permissions(&file, Permissions::from_mode(mode & 0o700)) {
                Ok(()) => tracing::warn!(
                    file = %file.display(),
                    was = format!("{mode:o}"),
                    "the database file was readable by others (it holds the generated JWT key and every user's data): now owner-only"
                ),
                Err(e) => tracing::warn!(
                    file = %file.display(),
                    error = %e,
                    "the database file is readable by others and cannot be made owner-only"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn private_files_whatever_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("export.jsonl");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        let mut f = create_private(&p).unwrap();
        io::Write::write_all(&mut f, b"new").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }

    #[test]
    fn sqlite_files_are_created_and_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        prepare_sqlite(&format!("sqlite://{}?mode=rwc", db.display()), true);
        assert_eq!(mode(&db), 0o600);
        let old = dir.path().join("old.db");
        for f in [&old, &dir.path().join("old.db-wal")] {
            std::fs::write(f, "").unwrap();
            std::fs::set_permissions(f, Permissions::from_mode(0o644)).unwrap();
        }
        prepare_sqlite(&format!("sqlite://{}", old.display()), true);
        assert_eq!(mode(&old), 0o600);
        assert_eq!(mode(&dir.path().join("old.db-wal")), 0o600);
        // Read-only or in-memory URLs create nothing.
        let ro = dir.path().join("ro.db");
        prepare_sqlite(&format!("sqlite://{}?mode=ro", ro.display()), false);
        assert!(!ro.exists());
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
