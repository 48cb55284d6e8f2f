//! Replacing a file atomically: write `<path>.tmp`, fsync it, rename it over `path`, fsync the
//! directory. A crash leaves either the old or the new file, never a torn one. Used by the
//! registry and by the memory backend's reservation snapshot.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use log::warn;

/// Makes a directory's entries (the rename of a save) durable; replaceable in tests.
pub(crate) type SyncDir = fn(&Path) -> std::io::Result<()>;

/// Syncs `dir` itself, so that a rename inside it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// `path` with `.tmp` appended: where a save is written before the rename.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces `path` with `contents` atomically, creating its directory if needed. Callers
/// serialize saves of one path (they share the `.tmp` file). Blocking.
///
/// Once the rename has put the new file in place the save counts as done: a failing fsync of
/// the directory afterwards is logged as a warning naming `what` (the rename may not survive a
/// power loss), not returned, since every reader already sees the new file.
pub(crate) fn replace(
    path: &Path,
    contents: &[u8],
    sync_dir: SyncDir,
    what: &str,
) -> std::io::Result<()> {
    replace_with(path, |out| out.write_all(contents), sync_dir, what)
}

/// [`replace`] with the contents streamed by `write` (through a buffer) instead of built in
/// memory first: a large file costs no second copy of itself. An error from `write` leaves
/// `path` untouched.
pub(crate) fn replace_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    sync_dir: SyncDir,
    what: &str,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let tmp = tmp_path(path);
    let result = (|| {
        let mut out = std::io::BufWriter::with_capacity(1 << 18, fs::File::create(&tmp)?);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = sync_dir(&dir) {
        warn!(
            "{what} {}: saved, but syncing directory {} failed ({e}); the change is in place \
             but may be lost on a power failure",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}
