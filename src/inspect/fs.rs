//! Listing and reading files through hadris's `Volume`, which both the FAT
//! reader (ESPs, `efiboot.img`) and the ISO 9660 reader implement.

use hadris_fs::ErrorKind;
use hadris_fs::sync::{FileSystem, Volume};

use super::FileEntry;

/// Every regular file below the root, with its size, in path order.
pub fn list_files<F: FileSystem>(vol: &Volume<F>) -> Result<Vec<FileEntry>, String> {
    let mut files = Vec::new();
    for item in vol.walk("/").map_err(|e| e.to_string())? {
        let item = item.map_err(|e| e.to_string())?;
        let meta = item.entry().metadata();
        if meta.file_type().is_file() {
            let path = String::from_utf8_lossy(item.path());
            files.push(FileEntry {
                path: path.trim_start_matches('/').to_string(),
                size_bytes: meta.len(),
                efi: None,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The bytes of the file at `path`, or None when there is none.
pub fn read_file<F: FileSystem>(vol: &Volume<F>, path: &str) -> Result<Option<Vec<u8>>, String> {
    match vol.read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(format!("reading {path}: {e}")),
    }
}

/// Up to `len` bytes from the start of the file at `path`.
pub fn read_head<F: FileSystem>(
    vol: &Volume<F>,
    path: &str,
    len: usize,
) -> Result<Option<Vec<u8>>, String> {
    use hadris_fs::OpenOptions;
    let mut file = match vol.open(path, OpenOptions::new().read()) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("opening {path}: {e}")),
    };
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let n = file
            .read(&mut buf[filled..])
            .map_err(|e| format!("reading {path}: {e}"))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    let _ = file.close();
    Ok(Some(buf))
}
