//! Temporary folders for data directories, AOF files and oracle working dirs.

/// A fresh folder under the system temp dir named `tessera-<name>-...`, removed with everything
/// in it when the returned value is dropped (keep it alive as long as a server uses it).
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tessera-{name}-"))
        .tempdir()
        .expect("create a temp dir")
}

pub use tempfile::TempDir;
