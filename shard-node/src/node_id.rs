//! The node id kept in the data directory: read at start, made once when missing, so a restarted
//! node registers under the same id and gets its slots back.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tessera_proto::topology::NodeId;

use crate::error::NodeIdError;

/// File name of the id inside the data directory.
pub const FILE_NAME: &str = "node-id";

/// Reads the node id from `data_dir`, or makes a random one and writes it there first. The write
/// is atomic (temporary file, fsync, rename, fsync of the directory): a crash leaves either no id
/// or the whole id, never a torn one that would strand the node's slots.
pub fn load_or_create(data_dir: &Path) -> Result<NodeId, NodeIdError> {
    let path = data_dir.join(FILE_NAME);
    match fs::read_to_string(&path) {
        Ok(text) => NodeId::parse(text.trim()).map_err(|_| NodeIdError::Invalid { path }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = NodeId::from_random_bytes(rand::random());
            write_atomically(&path, format!("{id}\n").as_bytes()).map_err(|(action, source)| {
                NodeIdError::Io {
                    action,
                    path: path.clone(),
                    source,
                }
            })?;
            tracing::info!(node_id = %id, path = %path.display(), "created a new node id");
            Ok(id)
        }
        Err(source) => Err(NodeIdError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// Writes `contents` to `path` so a crash leaves the old file or the new one, never a torn one.
pub(crate) fn write_atomically(
    path: &Path,
    contents: &[u8],
) -> Result<(), (&'static str, io::Error)> {
    let tmp = tmp_path(path);
    let mut file = fs::File::create(&tmp).map_err(|e| ("create", e))?;
    file.write_all(contents).map_err(|e| ("write", e))?;
    file.sync_all().map_err(|e| ("fsync", e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| ("rename", e))?;
    if let Some(dir) = path.parent() {
        // The rename is durable only once the directory entry is.
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ("fsync the directory of", e))?;
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}
